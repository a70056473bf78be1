"""The live dashboard: a self-contained page at /dashboard and the
server-sent events it listens to at /dashboard/events."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from functools import cache
from importlib.resources import files

import msgspec
from litestar import MediaType, Response, get
from litestar.datastructures import State
from litestar.response import ServerSentEvent, ServerSentEventMessage

from flashsale.http.auth import guard_operator
from flashsale.http.context import services_of, streams_of
from flashsale.http.stopping import stopping, watch_stop_signals
from flashsale.http.streams import SharedMessage, StreamGate
from flashsale.service.dashboard import DashboardFeed, DashboardSnapshot

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
    """503 past WORKER_MAX_STREAMS; ends after STREAM_IDLE_TIMEOUT of
    unchanged snapshots (the page's EventSource reconnects)."""
    watch_stop_signals()
    gate = streams_of(state)
    gate.admit()
    events = _events(services_of(state).dashboard, gate)
    return ServerSentEvent(events, retry_duration=RECONNECT_MS)


async def _events(feed: DashboardFeed, gate: StreamGate) -> AsyncIterator[ServerSentEventMessage]:
    # The loop ends when the client goes (Litestar cancels the stream on
    # disconnect), when the worker is told to stop (it would wait for us) or
    # when nothing has changed for the idle timeout.
    async for snapshot in gate.bounded(feed.snapshots(stopping), _changes()):
        yield snapshot_message(snapshot)


class _Last:
    """The last snapshot's message. The feed hands every stream of the worker
    the same snapshot object (one poller, fanned out), so it is encoded once
    per tick however many dashboards watch, not once per stream."""

    snapshot: DashboardSnapshot | None = None
    message = SharedMessage()


def snapshot_message(snapshot: DashboardSnapshot) -> ServerSentEventMessage:
    if _Last.snapshot is not snapshot:
        data = _ENCODER.encode(snapshot).decode()
        _Last.snapshot, _Last.message = snapshot, SharedMessage(data, "snapshot")
    return _Last.message


def _changes() -> Callable[[DashboardSnapshot], bool]:
    """Whether a snapshot shows anything its predecessor did not (its time aside)."""
    last: list[object] = [None]

    def news(snapshot: DashboardSnapshot) -> bool:
        seen = (snapshot.database, snapshot.coupons)
        changed = seen != last[0]
        last[0] = seen
        return changed

    return news


DASHBOARD_HANDLERS = [dashboard, dashboard_events]
