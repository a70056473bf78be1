"""The events feed followed live, one poller per worker for every stream.

Before, each open ``/api/events/stream`` polled the database four times a
second: 500 streams were 2,000 queries a second. Here one poller per worker
follows the head of the feed and keeps the latest ``HISTORY`` events; every
stream whose position is within them reads from memory. A stream that
resumes from further back (``Last-Event-ID``, ``after``) catches up with its
own pages first, exactly as before, then joins the shared window.

Correctness rests on one fact: the window holds every event after ``floor``
up to ``head``, in feed order, with nothing missing (the poller reads
contiguous pages of a feed that never skips one: queries.sql, events_page).
So a stream at a position at or past ``floor`` finds everything after it
in the window, and a stream behind ``floor`` is not served from it."""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import AsyncGenerator, Callable

from flashsale.domain import ServiceUnavailable
from flashsale.service.periodic import stop_task
from flashsale.service.ports import Event, EventReader, FeedPosition

POLL_SECONDS = 0.25
STREAM_PAGE = 500
HISTORY = 10 * STREAM_PAGE  # events kept in memory (a few MB at most)

Stopping = Callable[[], bool]


class EventFeed:
    def __init__(self, reader: EventReader, *, poll: float = POLL_SECONDS) -> None:
        self._reader = reader
        self._poll = poll
        self._followers = 0
        self._events: list[Event] = []
        self._keys: list[FeedPosition] = []  # the events' positions, for bisect
        self._floor: FeedPosition | None = None  # None: no poller running yet
        self._published = asyncio.Event()
        self._poller: asyncio.Task[None] | None = None

    @property
    def followers(self) -> int:
        return self._followers

    async def follow(
        self, after: FeedPosition, stopping: Stopping
    ) -> AsyncGenerator[list[Event], None]:
        """Every event after ``after``, a page at a time (an empty page on each
        quiet poll), until ``stopping()`` or the consumer stops iterating."""
        self._followers += 1
        try:
            self._start_poller(after, stopping)
            while not stopping():
                page = self._from_window(after)
                if page is None:  # behind the window: catch up alone
                    page = await self._page(after)
                    if len(page) < STREAM_PAGE:  # the database is away or the poller ended
                        await asyncio.sleep(self._poll)
                elif len(page) < STREAM_PAGE:
                    await self._next_poll()
                    page = self._from_window(after) or []
                if page:
                    after = page[-1].position
                yield page
        finally:
            self._followers -= 1

    async def close(self) -> None:
        """Stop polling (shutdown); open streams end with their poller."""
        await stop_task(self._poller)

    def _from_window(self, after: FeedPosition) -> list[Event] | None:
        if self._floor is None or after < self._floor:
            return None
        start = bisect.bisect_right(self._keys, after)
        return self._events[start : start + STREAM_PAGE]

    async def _next_poll(self) -> None:
        await self._published.wait()

    def _start_poller(self, after: FeedPosition, stopping: Stopping) -> None:
        if self._poller is None or self._poller.done():
            self._floor = after
            self._events, self._keys = [], []
            self._poller = asyncio.create_task(self._poll_while_followed(after, stopping))

    async def _poll_while_followed(self, head: FeedPosition, stopping: Stopping) -> None:
        try:
            while self._followers > 0 and not stopping():
                events = await self._page(head)
                if events:
                    head = events[-1].position
                    self._keep(events)
                self._wake()
                if len(events) < STREAM_PAGE:
                    await asyncio.sleep(self._poll)
        finally:
            self._floor = None  # a later stream must not trust a window nobody keeps
            self._wake()

    def _keep(self, events: list[Event]) -> None:
        self._events.extend(events)
        self._keys.extend(event.position for event in events)
        if len(self._events) > 2 * HISTORY:  # trim now and then, not per poll
            cut = len(self._events) - HISTORY
            self._floor = self._keys[cut - 1]
            del self._events[:cut], self._keys[:cut]

    def _wake(self) -> None:
        published, self._published = self._published, asyncio.Event()
        published.set()

    async def _page(self, after: FeedPosition) -> list[Event]:
        # A database that is away pauses the streams (empty pages) instead of
        # ending them: positions are kept, nothing is lost.
        try:
            return await self._reader.events_page(after=after, limit=STREAM_PAGE)
        except ServiceUnavailable:
            return []
