"""The events feed's use cases: a page of the global feed, a page of one
coupon's events, and the global feed followed live (the SSE stream).

The global feed never skips an event (the argument is in queries.sql,
events_page); a page can end before ``limit`` events while an older
transaction is still open, and the next page picks up where it ended."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from flashsale.domain import CouponNotFound, ServiceUnavailable
from flashsale.service.deadline import deadline
from flashsale.service.ports import Event, EventReader, FeedPosition

POLL_SECONDS = 0.25
STREAM_PAGE = 500


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
    def __init__(
        self, reader: EventReader, *, request_timeout: float = 10.0, poll: float = POLL_SECONDS
    ) -> None:
        self._reader = reader
        self.request_timeout = request_timeout
        self._poll = poll

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

    async def follow(
        self, after: FeedPosition, stopping: Callable[[], bool] = lambda: False
    ) -> AsyncIterator[list[Event]]:
        """Every event after ``after``, a page per poll (empty when nothing
        is new), until ``stopping()`` or the consumer stops iterating. A full
        page is followed at once; otherwise the next poll waits a tick. A
        database that is away pauses the stream (empty pages) instead of
        ending it: the position is kept, nothing is lost."""
        while not stopping():
            events = await self._poll_once(after)
            yield events
            if events:
                after = events[-1].position
            if len(events) < STREAM_PAGE:
                await asyncio.sleep(self._poll)

    async def _poll_once(self, after: FeedPosition) -> list[Event]:
        try:
            return await self._reader.events_page(after=after, limit=STREAM_PAGE)
        except ServiceUnavailable:
            return []
