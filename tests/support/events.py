"""Reading the events feed in tests: the whole feed up to now, and waiting
for events to show (the feed holds back behind any transaction open on the
server, and the suite's PostgreSQL may be shared with other test runs)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from flashsale.service.ports import FEED_START, Event, EventReader, FeedPosition

PAGE = 100
WAITS = 1200  # polls 50 ms apart: a minute for a transaction elsewhere to end


async def read_feed(
    reader: EventReader, after: FeedPosition = FEED_START
) -> tuple[list[Event], FeedPosition]:
    """Every event the feed shows now after ``after``, and where it ended."""
    events: list[Event] = []
    while page := await reader.events_page(after=after, limit=PAGE):
        events += page
        after = page[-1].position
    return events, after


async def read_feed_until(
    reader: EventReader,
    done: Callable[[list[Event]], bool],
    after: FeedPosition = FEED_START,
    wait_seconds: float = 30.0,
) -> tuple[list[Event], FeedPosition]:
    """The feed read in a loop from ``after`` until ``done(events so far)``."""
    events: list[Event] = []
    deadline = time.monotonic() + wait_seconds
    while True:
        page, after = await read_feed(reader, after)
        events += page
        if done(events):
            return events, after
        assert time.monotonic() < deadline, f"the feed stopped at {len(events)} events"
        await asyncio.sleep(0.05)


async def coupon_events(reader: EventReader, name: str) -> list[Event]:
    """All of one coupon's events, by seq."""
    events: list[Event] = []
    while True:
        after = events[-1].seq if events else 0
        page = await reader.coupon_events_page(name, after=after, limit=PAGE)
        assert page is not None, f"no coupon {name!r}"
        if not page:
            return events
        events += page


def assert_gapless(events: list[Event]) -> None:
    """Per coupon, seq 1, 2, 3, ... in the order given."""
    last: dict[str, int] = {}
    for event in events:
        expected = last.get(event.coupon_name, 0) + 1
        assert event.seq == expected, (event.coupon_name, event.seq, expected)
        last[event.coupon_name] = event.seq


async def changes_in_database(db: Any) -> Counter[tuple[str, str, str]]:
    """(coupon, type, user) of every claim change the tables record: a claim
    for every row of claims and of claim_history, an end for every history
    row, a redemption for every redeemed one, live or ended."""
    rows = await db.fetch(
        "SELECT coupon_name, user_id, redeemed_at IS NOT NULL AS redeemed, NULL AS reason"
        "  FROM claims"
        " UNION ALL "
        "SELECT coupon_name, user_id, redeemed_at IS NOT NULL, reason FROM claim_history"
    )
    changes: Counter[tuple[str, str, str]] = Counter()
    for row in rows:
        key = (row["coupon_name"], row["user_id"])
        changes[(*key, "claimed")] += 1
        if row["redeemed"]:
            changes[(*key, "redeemed")] += 1
        if row["reason"] is not None:
            changes[(*key, "expired" if row["reason"] == "expired" else "released")] += 1
    return changes


def claim_changes(events: list[Event]) -> Counter[tuple[str, str, str]]:
    """The same from events (coupon events left out)."""
    return Counter((e.coupon_name, e.user_id, e.type) for e in events if e.user_id is not None)


async def feed_over_http(client: Any, headers: dict[str, str], count: int) -> list[dict[str, Any]]:
    """``GET /api/events`` once it shows at least ``count`` events, in feed
    order: the feed shows a prefix that grows as transactions anywhere on
    the server end, and the suite's PostgreSQL may be shared."""
    for _ in range(WAITS):
        response = await client.get("/api/events", params={"limit": "1000"}, headers=headers)
        assert response.status_code == 200, response.text
        events: list[dict[str, Any]] = response.json()["events"]
        if len(events) >= count:
            return events
        await asyncio.sleep(0.05)
    raise AssertionError(f"the feed never showed {count} events")
