"""Request ids, request metrics and the opt-in access log (``/metrics``
itself is http/metrics.py).

One ASGI layer (``RequestObserver``) does it all for every request: it picks
the request id, binds it for log lines, stamps it on the response, and times
the request by route template (bounded label values, unlike raw paths).
"""

from __future__ import annotations

import itertools
import os
import re
import time
from collections.abc import Awaitable

from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPScope, Message, Receive, Scope, Send

from flashsale.logs import REQUEST_ID, get_logger
from flashsale.metrics import get_metrics

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_KEY = b"x-request-id"
_STATE_KEY = "request_id"
# An incoming id is kept when it is 1-128 printable ASCII characters without
# spaces (what tracing systems send); anything else is replaced, so a log
# line never carries a client's control characters or megabytes.
_SANE_ID = re.compile(rb"[\x21-\x7e]{1,128}")

access_log = get_logger("flashsale.access")


def request_id_of(scope: Scope) -> str:
    """The request's id: the client's when sane, else a new one; the same
    for the whole request."""
    state = scope["state"]
    request_id: str | None = state.get(_STATE_KEY)
    if request_id is None:
        request_id = state[_STATE_KEY] = _incoming_id(scope) or new_request_id()
    return request_id


class _RequestIds:
    """32 hex digits: 16 random per process (new in each forked worker), then
    a counter. Unique without a system call per request (os.urandom per
    request showed in a worker's profile: docs/benchmarks.md, "What
    observability costs")."""

    def __init__(self) -> None:
        self.reseed()

    def reseed(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._counter = itertools.count()

    def draw(self) -> str:
        return f"{self._prefix}{next(self._counter):016x}"


_request_ids = _RequestIds()
os.register_at_fork(after_in_child=_request_ids.reseed)


def new_request_id() -> str:
    return _request_ids.draw()


def _incoming_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == _REQUEST_ID_KEY:
            return value.decode("ascii") if _SANE_ID.fullmatch(value) else None
    return None


class RequestObserver:
    """The outermost ASGI layer, around Litestar's exception handling and
    routing, so it sees every response (404 and 405 from the router too) as
    the client gets it, for the price of one wrapper per request (a Litestar
    middleware would add a layer per route, and an exception handler)."""

    def __init__(self, app: ASGIApp, *, access: bool) -> None:
        self.app = app
        self.access = access
        self.metrics = get_metrics()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        REQUEST_ID.set(request_id)
        header = (_REQUEST_ID_KEY, request_id.encode("ascii"))
        started = time.perf_counter()
        status = 500  # what the client gets if nothing is sent

        def send_observed(message: Message) -> Awaitable[None]:
            # Not a coroutine: the server's own awaitable goes back to the
            # caller, so http/bounds.py can ask it whether the send is done.
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            return send(message)

        try:
            await self.app(scope, receive, send_observed)
        finally:
            self._record(scope, status, time.perf_counter() - started)

    def _record(self, scope: HTTPScope, status: int, elapsed: float) -> None:
        # The router sets the template; unknown paths have none and are not
        # timed (a raw path would be an unbounded label).
        route: str | None = scope.get("path_template")
        method = scope["method"]
        if route is not None:
            self.metrics.observe_request(method, route, status, elapsed)
        if self.access:
            access_log.info(
                "request",
                method=method,
                path=scope["path"],
                route=route,
                status=status,
                duration_ms=round(elapsed * 1000, 3),
            )
