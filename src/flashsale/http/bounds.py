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

The deadlines are checked by one sweeper task per worker every
``SWEEP_SECONDS``, which stamps the times itself and asks Granian's pending
receive or send whether it is done: a request pays a counter and an
attribute write per receive and send, no timer, clock or coroutine (the
claim is the hot route: docs/benchmarks.md). A cut comes up to two sweeps
after its deadline, plus the pacing when many are due at once (_cut_late).

A worker full of requests (``WORKER_MAX_REQUESTS``) makes room before it
refuses: the oldest request still waiting on its body is cut (408) for the
new one (a request once cut holds no place while it leaves). A client that
sends its request whole, as every real client of a claim does, is then
never refused because stalled bodies hold the places; only when every
place holds a request that has its body is the new one answered 503."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable
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
from flashsale.metrics import count_cut

SWEEP_SECONDS = 0.5
CUTS_PER_TURN = 16  # then CUT_PAUSE: a burst of cuts takes ~5 ms of a worker at a time
CUT_PAUSE = 0.01
NEVER = math.inf
_EVENT_STREAM = b"text/event-stream"
_ENCODER = msgspec.json.Encoder()
Headers = list[tuple[bytes, bytes]]
Task = asyncio.Task[object]
# What asyncio.current_task() reads: the task each loop runs now. Read here
# because asyncio.current_task() asks get_running_loop() first, which on
# CPython 3.11 checks getpid(), a system call: 0.3 us, a third of what this
# layer cost a request (docs/benchmarks.md). Empty where asyncio keeps no
# such table: then current_task() it is, every time.
_RUNNING_TASKS: dict[asyncio.AbstractEventLoop, Task] = getattr(asyncio.tasks, "_current_tasks", {})


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
    """One request's progress, as the sweeper needs it. The wrappers only
    count and keep Granian's awaitable and the answer's start (no coroutine,
    no clock, no header scan per call): the sweeper stamps the times itself,
    asks the awaitable whether the request is still waiting on the client,
    and reads the start only when a send waits."""

    __slots__ = (
        "_receive",
        "_send",
        "body_done",
        "cut",
        "head",
        "receiving",
        "sending",
        "sends",
        "sent",
        "stamps",
        "task",
    )

    def __init__(self, task: Task | None, receive: Receive, send: Send) -> None:
        self.task = task
        self._receive = receive
        self._send = send
        self.receiving: Awaitable[object] | None = None  # the latest receive
        self.sending: Awaitable[None] | None = None  # the latest send
        self.head: Message | None = None  # the answer's start, once sent
        self.body_done = False
        self.sends = 0
        self.sent = 0
        self.cut = False
        self.stamps: _Stamps | None = None  # the sweeper's, from its first look

    def receive(self) -> Awaitable[ReceiveMessage]:
        # Once the body is in, a receive only waits for the client to go
        # (Litestar's streams listen for it): no deadline then.
        previous = self.receiving
        if previous is not None and not _more_body(previous):
            self.body_done = True
        awaitable = self.receiving = self._receive()
        return awaitable

    def send(self, message: Message) -> Awaitable[None]:
        self.sends += 1
        body: bytes | None = message.get("body")  # type: ignore[assignment]
        if body is None:  # the answer's start
            self.head = message
        else:
            self.sent += len(body)
        awaitable = self.sending = self._send(message)
        return awaitable

    async def send_unbounded(self, message: Message) -> None:
        await self._send(message)

    def late(self, now: float, limits: Limits) -> str | None:
        """The deadline the request has missed, if any (None once cut)."""
        if self.cut or self.task is None:
            return None
        stamps = self.stamps
        if stamps is None:
            stamps = self.stamps = _Stamps(now)
        if self.sends:
            return self._late_answer(now, limits, stamps)
        return self._late_body(now, limits, stamps)

    def stalled_body(self) -> bool:
        """Waiting on the client for its body (nothing answered yet)."""
        return not (self.cut or self.sends or self.body_done) and _waiting(self.receiving)

    def cut_off(self, reason: str) -> bool:
        """Cancels the request, counted under ``reason`` (metrics.CUT_REASONS)."""
        if self.task is None:
            return False
        self.cut = True
        self.task.cancel()
        count_cut(reason)
        return True

    def _late_body(self, now: float, limits: Limits, stamps: _Stamps) -> str | None:
        if self.body_done or not _waiting(self.receiving):
            return None
        return "body_timeout" if now - stamps.seen >= limits.body_timeout else None

    def _late_answer(self, now: float, limits: Limits, stamps: _Stamps) -> str | None:
        """Which of the answer's deadlines it has missed, if any."""
        if stamps.started == NEVER:
            stamps.started = now
        if not _waiting(self.sending):
            return None
        if stamps.sends != self.sends:
            stamps.sends, stamps.since = self.sends, now
            return None
        if now - stamps.since >= limits.send_timeout:
            return "send_timeout"
        if self.head is not None and _is_stream(self.head):
            return None
        answering = now - stamps.started
        if answering - limits.send_timeout > self.sent / limits.min_send_rate:
            return "too_slow"
        return "response_timeout" if answering >= limits.response_timeout else None


class _Stamps:
    """What the sweeper saw of one request: when it first saw it, when it
    first saw its answer begun, and the send it last saw waiting (its
    count, and since when)."""

    __slots__ = ("seen", "sends", "since", "started")

    def __init__(self, now: float) -> None:
        self.seen = now
        self.started = NEVER
        self.sends = 0
        self.since = NEVER


def _waiting(awaitable: Awaitable[object] | None) -> bool:
    """Whether the request waits on this receive or send (Granian's futures
    have done(); an awaitable without it completes at once)."""
    done = getattr(awaitable, "done", None)
    return done is not None and not done()


def _more_body(received: Awaitable[object]) -> bool:
    """Whether a completed receive said more body follows."""
    try:
        message = received.result()  # type: ignore[attr-defined]
    except Exception:
        return False
    return bool(message.get("more_body", False))


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
        self._watches: dict[_Watch, None] = {}  # insertion order: oldest first
        self._sweeper: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the worker's, once seen
        # Requests cut but not yet gone (their cancellation runs at the loop's
        # next turn): they hold no place, or a burst of new requests would
        # find every place taken by requests already leaving, and get 503.
        self._leaving = 0

    @property
    def in_flight(self) -> int:
        return len(self._watches)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        places = len(self._watches) - self._leaving
        if places >= self.limits.max_requests and not self._make_room():
            count_cut("worker_full")
            await send(_BUSY[0])
            await send(_BUSY[1])
            return
        task = _RUNNING_TASKS.get(self._loop) or self._current_task()  # type: ignore[arg-type]
        watch = _Watch(task, receive, send)
        self._watches[watch] = None
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep())
        try:
            await self.app(scope, watch.receive, watch.send)
        except asyncio.CancelledError:
            if not watch.cut or watch.task is None or watch.task.uncancel() > 0:
                raise
            await _cut_off(watch)
        finally:
            self._watches.pop(watch, None)
            if watch.cut:
                self._leaving -= 1

    def _current_task(self) -> Task | None:
        """The request's task, the slow way; it remembers the loop, so the
        next requests on it find theirs in asyncio's table (a worker runs
        one loop for good; in-process tests may switch loops)."""
        self._loop = asyncio.get_running_loop()
        return asyncio.current_task()

    def _make_room(self) -> bool:
        """Cuts the oldest request still waiting on its body; False: none is
        (every place holds a request that has its body)."""
        for watch in self._watches:
            if watch.stalled_body():
                self._cut(watch, "evicted")
                return True
        return False

    def _cut(self, watch: _Watch, reason: str) -> None:
        if watch.cut_off(reason):
            self._leaving += 1

    async def _sweep(self) -> None:
        """Cancels each request past its deadline; ends when none is left (so
        an idle worker has no task running, and shuts down without one)."""
        try:
            while self._watches:
                await asyncio.sleep(SWEEP_SECONDS)
                await self._cut_late(time.monotonic())
        finally:
            self._sweeper = None

    async def _cut_late(self, now: float) -> None:
        """Cuts the requests past their deadline, CUTS_PER_TURN at a time,
        CUT_PAUSE apart. Requests that arrived together miss their deadline
        in the same sweep (4,000 half-sent bodies: a thousand a worker), and
        a cut costs the worker ~0.3 ms (the task unwound, the 408 handed to
        Granian, whose thread is closing the other connections meanwhile):
        cut at once, they stalled every other request of the worker for
        100-250 ms (docs/benchmarks.md). Paced, the loop serves what is
        ready between two handfuls, and a thousand cuts take ~0.6 s more."""
        cuts = 0
        for watch in list(self._watches):
            if watch not in self._watches:
                continue  # ended while we paused
            if (reason := watch.late(now, self.limits)) is not None:
                self._cut(watch, reason)
                cuts += 1
                if cuts % CUTS_PER_TURN == 0:
                    await asyncio.sleep(CUT_PAUSE)


async def _cut_off(watch: _Watch) -> None:
    """After a missed deadline: a 408 when the body was late (its
    ``Connection: close`` makes Granian drop the connection with the unread
    body); an answer already started is left unfinished, which Granian
    aborts by closing the connection (the client sees it cut short)."""
    if not watch.sends:  # cut in the one phase before an answer: the body
        await watch.send_unbounded(_SLOW[0])
        await watch.send_unbounded(_SLOW[1])
