"""The events feed's use cases: a page of the global feed and a page of one
coupon's events (the feed followed live is service/event_feed.py).

The global feed never skips an event (the argument is in queries.sql,
events_page); a page can end before ``limit`` events while an older
transaction is still open, and the next page picks up where it ended."""

from __future__ import annotations

from dataclasses import dataclass

from flashsale.domain import CouponNotFound
from flashsale.service.deadline import deadline
from flashsale.service.ports import Event, EventReader, FeedPosition


@dataclass(frozen=True, slots=True)
class EventsPage:
    events: list[Event]
    # Where the feed continues: after the last event, or where it was asked
    # from when nothing is new yet. The feed has no last page.
    next_after: FeedPosition


@dataclass(frozen=True, slots=True)
class CouponEventsPage:
    events: list[Event]
    next_after: int  # the last seq read (or the one asked from)


class EventReads:
    def __init__(self, reader: EventReader, *, request_timeout: float = 10.0) -> None:
        self._reader = reader
        self.request_timeout = request_timeout

    async def feed_page(self, *, after: FeedPosition, limit: int) -> EventsPage:
        async with deadline(self.request_timeout):
            events = await self._reader.events_page(after=after, limit=limit)
        return EventsPage(events, events[-1].position if events else after)

    async def coupon_page(self, name: str, *, after: int, limit: int) -> CouponEventsPage:
        async with deadline(self.request_timeout):
            events = await self._reader.coupon_events_page(name, after=after, limit=limit)
        if events is None:
            raise CouponNotFound(f"coupon {name!r} does not exist")
        return CouponEventsPage(events, events[-1].seq if events else after)
