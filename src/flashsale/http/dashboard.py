"""The live dashboard: a self-contained page at /dashboard and the
server-sent events it listens to at /dashboard/events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import cache
from importlib.resources import files

import msgspec
from litestar import MediaType, Response, get
from litestar.datastructures import State
from litestar.response import ServerSentEvent, ServerSentEventMessage

from flashsale.http.auth import guard_operator
from flashsale.http.context import services_of
from flashsale.http.stopping import stopping, watch_stop_signals
from flashsale.service.dashboard import DashboardFeed

_ENCODER = msgspec.json.Encoder()
RECONNECT_MS = 1000


@cache
def dashboard_page() -> bytes:
    return files("flashsale.http").joinpath("static/dashboard.html").read_bytes()


@get(
    "/dashboard",
    summary="Live dashboard (HTML)",
    tags=["dashboard"],
    include_in_schema=False,
    guards=[guard_operator],
)
async def dashboard() -> Response[bytes]:
    return Response(dashboard_page(), media_type=MediaType.HTML)


@get(
    "/dashboard/events",
    summary="Server-sent events: a snapshot of the busiest coupons every 0.5 s",
    tags=["dashboard"],
    guards=[guard_operator],
)
async def dashboard_events(state: State) -> ServerSentEvent:
    watch_stop_signals()
    return ServerSentEvent(_events(services_of(state).dashboard), retry_duration=RECONNECT_MS)


async def _events(feed: DashboardFeed) -> AsyncIterator[ServerSentEventMessage]:
    # The loop ends when the client goes (Litestar cancels the stream on
    # disconnect) or when the worker is told to stop (it would wait for us).
    async for snapshot in feed.snapshots(stopping):
        data = _ENCODER.encode(snapshot).decode()
        yield ServerSentEventMessage(data=data, event="snapshot")


DASHBOARD_HANDLERS = [dashboard, dashboard_events]
