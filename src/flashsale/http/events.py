"""The events feed: ``GET /api/events`` (admin) pages every change of every
coupon in an order that never skips one, ``GET /api/coupons/{name}/events``
pages one coupon's by seq, and ``GET /api/events/stream`` (admin) is the
global feed live as server-sent events, resumable with Last-Event-ID."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import msgspec
from litestar import get
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from flashsale.http.auth import staff_only
from flashsale.http.context import services_of, streams_of
from flashsale.http.openapi import (
    COUPON_NOT_FOUND,
    INVALID_REQUEST,
    SERVICE_UNAVAILABLE,
)
from flashsale.http.requests import (
    AFTER,
    LIMIT,
    AnyRequest,
    encode_cursor,
    feed_cursor,
    feed_position,
    page_limit,
    require_coupon_name,
    seq_cursor,
)
from flashsale.http.schemas import EventBody, EventsPageResponse
from flashsale.http.stopping import stopping, watch_stop_signals
from flashsale.http.streams import SharedMessage, StreamGate
from flashsale.service.event_feed import HISTORY, STREAM_PAGE, EventFeed
from flashsale.service.events import EventsPage
from flashsale.service.ports import Event

KEEP_ALIVE_SECONDS = 15.0  # a comment line when nothing happened: proxies keep the stream open
RECONNECT_MS = 1000
_ENCODER = msgspec.json.Encoder()
LAST_EVENT_ID = Parameter(
    header="Last-Event-ID",
    default=None,
    description="The id of the last event received (an EventSource sends it when it "
    "reconnects); the stream resumes after it, taking precedence over `after`",
)


def event_body(event: Event) -> EventBody:
    return EventBody(
        event.event_id,
        event.coupon_name,
        event.seq,
        event.type,
        event.user_id,
        event.at,
        event.data,
    )


@get(
    "/api/events",
    summary="Every change of every coupon, a page at a time; never skips one",
    tags=["events"],
    **staff_only(INVALID_REQUEST, SERVICE_UNAVAILABLE),
)
async def list_events(
    state: State, limit: str | None = LIMIT, after: str | None = AFTER
) -> EventsPageResponse:
    """Ordered by the writing transaction, then the event; a page holds only
    events of transactions older than every one still open, so a later page
    can never bring one that sorts before it. ``next`` is always a cursor:
    an empty page means nothing is new yet (ask again). Per coupon the
    events come in ``seq`` order."""
    events = services_of(state).events
    page = await events.feed_page(after=feed_position(after), limit=page_limit(limit))
    return EventsPageResponse([event_body(e) for e in page.events], feed_cursor(page.next_after))


@get(
    "/api/coupons/{name:str}/events",
    summary="A coupon's events by sequence number, a page at a time",
    tags=["events"],
    **staff_only(INVALID_REQUEST, COUPON_NOT_FOUND, SERVICE_UNAVAILABLE),
)
async def coupon_events(
    state: State, name: str, limit: str | None = LIMIT, after: str | None = AFTER
) -> EventsPageResponse:
    require_coupon_name(name)
    events = services_of(state).events
    page = await events.coupon_page(name, after=seq_cursor(after), limit=page_limit(limit))
    cursor = encode_cursor(page.next_after)
    assert cursor is not None
    return EventsPageResponse([event_body(e) for e in page.events], cursor)


@get(
    "/api/events/stream",
    summary="The events feed live, as server-sent events (resumable with Last-Event-ID)",
    tags=["events"],
    **staff_only(
        INVALID_REQUEST,
        SERVICE_UNAVAILABLE,
        responses={
            200: ResponseSpec(
                None,
                description="text/event-stream: each event as `id: <cursor>`, "
                "`event: <type>`, `data: <event JSON>`; a comment every 15 s when idle",
                media_type="text/event-stream",
            )
        },
    ),
)
async def event_stream(
    request: AnyRequest,
    after: str | None = AFTER,
    last_event_id: str | None = LAST_EVENT_ID,
) -> ServerSentEvent:
    """The first page is read before the response starts, so a bad cursor
    (400), an unreachable database or too many open streams (503) is an
    answer, not a cut stream. A stream with no event for STREAM_IDLE_TIMEOUT
    ends; the client reconnects with Last-Event-ID."""
    watch_stop_signals()
    gate = streams_of(request.app.state)
    gate.admit()
    services = services_of(request.app.state)
    position = feed_position(last_event_id if last_event_id is not None else after)
    first = await services.events.feed_page(after=position, limit=STREAM_PAGE)
    messages = _messages(services.event_feed, first, gate)
    return ServerSentEvent(messages, retry_duration=RECONNECT_MS)


async def _messages(
    feed: EventFeed, first: EventsPage, gate: StreamGate
) -> AsyncIterator[ServerSentEventMessage]:
    # Ends when the client goes (Litestar cancels the stream on disconnect),
    # when the worker is told to stop (Granian would wait for us) or when the
    # stream has been idle too long.
    for event in first.events:
        yield event_message(event)
    quiet_since = time.monotonic()
    async for page in gate.bounded(feed.follow(first.next_after, stopping), bool):
        for event in page:
            yield event_message(event)
        now = time.monotonic()
        if page:
            quiet_since = now
        elif now - quiet_since >= KEEP_ALIVE_SECONDS:
            yield ServerSentEventMessage(data=None, comment="keep-alive")
            quiet_since = now


# Each event's message, made once for every stream of the worker: the
# streams read the same Event objects from the feed's one window, so a
# thousand followers encode an event once, not a thousand times. Kept by
# the object's identity, with the object itself (so its id is not reused
# while the entry lives): an event read anew from the database, as a stream
# catching up does, or another database's event with the same id after a
# reset, is never answered from here. The latest SENT_MAX are kept (the
# window's most).
SENT_MAX = 2 * HISTORY
_SENT: dict[int, tuple[Event, SharedMessage]] = {}


def event_message(event: Event) -> ServerSentEventMessage:
    kept = _SENT.get(id(event))
    if kept is not None and kept[0] is event:
        return kept[1]
    message = SharedMessage(
        data=_ENCODER.encode(event_body(event)).decode(),
        event=event.type,
        id=feed_cursor(event.position),
    )
    _SENT[id(event)] = (event, message)
    if len(_SENT) > SENT_MAX:
        del _SENT[next(iter(_SENT))]  # the oldest (dicts keep insertion order)
    return message


EVENT_HANDLERS = [list_events, coupon_events, event_stream]
