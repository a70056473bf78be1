"""The worker's event streams (``/api/events/stream``, ``/dashboard/events``),
bounded: at most ``WORKER_MAX_STREAMS`` open at once (503 with Retry-After
past it, before the stream starts), and each ends once nothing new has
happened for ``STREAM_IDLE_TIMEOUT`` seconds (the client's EventSource
reconnects after the stream's retry delay, resuming with Last-Event-ID).
What a stream costs the database does not grow with their number: each
feed has one poller per worker (service/event_feed.py, service/dashboard.py)."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import TypeVar

from litestar.response import ServerSentEventMessage

from flashsale.domain import ServiceUnavailable
from flashsale.metrics import count_cut

T = TypeVar("T")


@dataclass
class SharedMessage(ServerSentEventMessage):
    """A message whose bytes are made once, however many streams send it
    (Litestar encodes each message it streams, stream by stream)."""

    encoded: bytes | None = None

    def encode(self) -> bytes:
        if self.encoded is None:
            self.encoded = super().encode()
        return self.encoded


class StreamGate:
    def __init__(self, max_streams: int, idle_timeout: float) -> None:
        self.max_streams = max_streams
        self.idle_timeout = idle_timeout
        self.open = 0

    def admit(self) -> None:
        """503 when the worker holds its most streams already. Checked as the
        stream is asked for and counted once it runs: a burst of openings may
        pass it by the few requests that are between the two at that moment."""
        if self.open >= self.max_streams:
            count_cut("streams_full")
            raise ServiceUnavailable("too many event streams are open, retry shortly")

    async def bounded(
        self, items: AsyncGenerator[T, None], news: Callable[[T], bool]
    ) -> AsyncIterator[T]:
        """``items`` until they end or none is ``news`` for the idle timeout
        (``items`` is closed either way: its poller loses a follower now)."""
        self.open += 1
        try:
            last_news = time.monotonic()
            async with aclosing(items):
                async for item in items:
                    now = time.monotonic()
                    if news(item):
                        last_news = now
                    elif now - last_news >= self.idle_timeout:
                        count_cut("stream_idle")
                        return
                    yield item
        finally:
            self.open -= 1
