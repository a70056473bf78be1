"""``Bounds``: every phase of a request that reaches the application has a
deadline, and a worker holds a bounded number of requests.

Granian bounds what comes before the application (a header must arrive
within its ``header_read_timeout``); from there on this layer does: the
body must arrive within ``BODY_TIMEOUT`` of the headers, each write of a
response must drain within ``SEND_TIMEOUT``, an answer must flow at
``MIN_SEND_RATE`` on average after that grace and end within
``RESPONSE_TIMEOUT`` (event streams are bounded by their own idle timeout
instead). A client that misses a deadline has its request task cancelled
(which frees whatever it held: a pool connection, a spooled file, a stream
slot); a missed body is answered 408 with ``Connection: close``, a missed
write leaves the answer unfinished, and Granian closes the socket.

The deadlines are kept as numbers on the request's ``_Watch`` and checked by
one sweeper task per worker every ``SWEEP_SECONDS``: a request pays a few
attribute writes per phase instead of a timer per receive and send (the
claim is the hot route: docs/benchmarks.md)."""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass

import msgspec
from litestar.enums import ScopeType
from litestar.status_codes import HTTP_408_REQUEST_TIMEOUT, HTTP_503_SERVICE_UNAVAILABLE
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Message,
    Receive,
    ReceiveMessage,
    Scope,
    Send,
)

from flashsale.http.schemas import ErrorResponse

SWEEP_SECONDS = 0.5
NEVER = math.inf
_EVENT_STREAM = b"text/event-stream"
_ENCODER = msgspec.json.Encoder()
Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class Limits:
    body_timeout: float = 10.0
    send_timeout: float = 10.0
    min_send_rate: int = 65_536
    response_timeout: float = 300.0
    max_requests: int = 1024


def _answer(status: int, error: str, message: str, extra: Headers) -> tuple[Message, Message]:
    body = _ENCODER.encode(ErrorResponse(error=error, message=message))
    length = (b"content-length", str(len(body)).encode())
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), length, *extra],
    }
    end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
    return start, end


_BUSY = _answer(
    HTTP_503_SERVICE_UNAVAILABLE,
    "service_unavailable",
    "the server is answering too many requests at once, retry shortly",
    [(b"retry-after", b"1")],
)
_SLOW = _answer(
    HTTP_408_REQUEST_TIMEOUT,
    "request_timeout",
    "the request body did not arrive in time",
    [(b"connection", b"close")],
)


class _Watch:
    """One request's phase and the moment it must be over by."""

    __slots__ = (
        "_receive",
        "_send",
        "body_by",
        "by",
        "cut",
        "limits",
        "sent",
        "started",
        "streaming",
        "task",
        "total_by",
    )

    def __init__(self, limits: Limits, receive: Receive, send: Send, now: float) -> None:
        self.task = asyncio.current_task()
        self._receive = receive
        self._send = send
        self.body_by = now + limits.body_timeout
        self.by = NEVER  # the current phase's deadline (none between phases)
        self.cut = False
        self.started = NEVER  # when the response began
        self.sent = 0
        self.streaming = False
        self.total_by = NEVER
        self.limits = limits

    async def receive(self) -> ReceiveMessage:
        # Once the body is in, a receive only waits for the client to go
        # (Litestar's streams listen for it): no deadline then.
        self.by = self.body_by
        try:
            message = await self._receive()
        finally:
            self.by = NEVER
        if not message.get("more_body", False):
            self.body_by = NEVER
        return message

    async def send(self, message: Message) -> None:
        limits = self.limits
        now = time.monotonic()
        if message["type"] == "http.response.start":
            self.started = now
            self.total_by = now + limits.response_timeout
            self.streaming = _is_stream(message)
        else:
            self.sent += len(message.get("body", b""))  # type: ignore[arg-type]
        by = now + limits.send_timeout
        if not self.streaming:
            rate_by = self.started + limits.send_timeout + self.sent / limits.min_send_rate
            by = min(by, rate_by, self.total_by)
        self.by = by
        try:
            await self._send(message)
        finally:
            self.by = NEVER

    async def send_unbounded(self, message: Message) -> None:
        await self._send(message)

    def expire(self, now: float) -> None:
        if now >= self.by and not self.cut and self.task is not None:
            self.cut = True
            self.task.cancel()


def _is_stream(message: Message) -> bool:
    headers: Headers = message.get("headers", [])  # type: ignore[assignment]
    for name, value in headers:
        if name == b"content-type":
            return value.startswith(_EVENT_STREAM)
    return False


class Bounds:
    """The ASGI layer that holds every request to its deadlines."""

    def __init__(self, app: ASGIApp, limits: Limits) -> None:
        self.app = app
        self.limits = limits
        self._watches: set[_Watch] = set()
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def in_flight(self) -> int:
        return len(self._watches)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        if len(self._watches) >= self.limits.max_requests:
            await send(_BUSY[0])
            await send(_BUSY[1])
            return
        watch = _Watch(self.limits, receive, send, time.monotonic())
        self._watches.add(watch)
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep())
        try:
            await self.app(scope, watch.receive, watch.send)
        except asyncio.CancelledError:
            if not watch.cut or watch.task is None or watch.task.uncancel() > 0:
                raise
            await _cut_off(watch)
        finally:
            self._watches.discard(watch)

    async def _sweep(self) -> None:
        """Cancels each request past its deadline; ends when none is left (so
        an idle worker has no task running, and shuts down without one)."""
        try:
            while self._watches:
                await asyncio.sleep(SWEEP_SECONDS)
                now = time.monotonic()
                for watch in list(self._watches):
                    watch.expire(now)
        finally:
            self._sweeper = None


async def _cut_off(watch: _Watch) -> None:
    """After a missed deadline: a 408 when the body was late (its
    ``Connection: close`` makes Granian drop the connection with the unread
    body); an answer already started is left unfinished, which Granian
    aborts by closing the connection (the client sees it cut short)."""
    if watch.started is NEVER:  # cut in the one phase before an answer: the body
        await watch.send_unbounded(_SLOW[0])
        await watch.send_unbounded(_SLOW[1])
