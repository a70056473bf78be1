"""The live events feed on a real database: every stream of a worker reads
from one poller, and a stream that resumes from further back catches up on
its own without a gap or a repeat."""

from __future__ import annotations

import asyncio

from flashsale.service.event_feed import EventFeed
from flashsale.service.ports import FEED_START, Event, FeedPosition, NewCoupon
from flashsale.storage.events import EventStore
from flashsale.storage.store import CouponStore
from tests.support.counting import Counting


class CountingReader(Counting[EventStore]):
    """The real event store, counting its queries (of the feed, not a coupon's)."""

    async def events_page(self, *, after: FeedPosition, limit: int) -> list[Event]:
        return await self.poll().events_page(after=after, limit=limit)

    async def coupon_events_page(self, name: str, *, after: int, limit: int) -> list[Event] | None:
        return await self.inner.coupon_events_page(name, after=after, limit=limit)


async def follow(feed: EventFeed, after: FeedPosition, count: int) -> list[Event]:
    seen: list[Event] = []
    async for page in feed.follow(after, lambda: False):
        seen.extend(page)
        if len(seen) >= count:
            break
    return seen


async def test_streams_share_one_poller(store: CouponStore, event_store: EventStore) -> None:
    await store.create_coupon(NewCoupon(name="FAN", amount=100))
    await store.decide_batch("FAN", [f"u{i}" for i in range(20)])
    reader = CountingReader(event_store)
    feed = EventFeed(reader, poll=0.05)
    views = await asyncio.gather(*(follow(feed, FEED_START, 21) for _ in range(8)))
    assert all(view == views[0] for view in views)
    assert [(e.type, e.user_id) for e in views[0]] == [("coupon_created", None)] + [
        ("claimed", f"u{i}") for i in range(20)
    ]
    # Eight streams polling on their own would have run at least eight queries.
    assert reader.polls < 8
    await feed.close()


async def test_a_stream_from_further_back_catches_up_without_gap_or_repeat(
    store: CouponStore, event_store: EventStore
) -> None:
    await store.create_coupon(NewCoupon(name="BACK", amount=100))
    await store.decide_batch("BACK", ["a", "b"])
    old = await event_store.events_page(after=FEED_START, limit=500)
    feed = EventFeed(event_store, poll=0.05)
    # The first stream starts the poller at the head of the feed.
    live = asyncio.create_task(follow(feed, old[-1].position, 2))
    await asyncio.sleep(0)  # it runs up to its first wait
    await store.decide_batch("BACK", ["c", "d"])
    late = await follow(feed, FEED_START, 5)
    assert [e.user_id for e in await live] == ["c", "d"]
    assert [(e.type, e.user_id) for e in late] == [
        ("coupon_created", None),
        ("claimed", "a"),
        ("claimed", "b"),
        ("claimed", "c"),
        ("claimed", "d"),
    ]
    await feed.close()
