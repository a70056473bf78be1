"""``/api/webhooks`` (admin): register an endpoint, list them with their
delivery state, rotate an endpoint's secret, delete one. A secret is shown
once, in the answer that made it (the 201 of a registration, the 200 of a
rotation); no other answer, log line or error message carries it."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

import msgspec
from litestar import delete, get, post
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from flashsale.domain import WebhookNotFound
from flashsale.http.allow import Resource
from flashsale.http.auth import admin_only
from flashsale.http.context import services_of
from flashsale.http.errors import InvalidRequest
from flashsale.http.idempotency import request_caller
from flashsale.http.openapi import (
    BODY_FAILURES,
    INVALID_REQUEST,
    SERVICE_UNAVAILABLE,
    WEBHOOK_NOT_FOUND,
)
from flashsale.http.requests import (
    AFTER,
    CREATE_WEBHOOK,
    FIELD_RULES,
    LIMIT,
    REPLAY,
    ROTATE_SECRET,
    AnyRequest,
    claim_cursor,
    decode_body,
    encode_cursor,
    page_limit,
)
from flashsale.http.schemas import (
    CreatedWebhookBody,
    CreateWebhookRequest,
    ReplayBody,
    ReplayRequest,
    RotatedSecretBody,
    RotateSecretRequest,
    WebhookBody,
    WebhooksResponse,
)
from flashsale.logs import get_logger
from flashsale.service.signing import is_secret
from flashsale.service.webhook_ports import Webhook

log = get_logger("flashsale.webhooks")

_WEBHOOK_ID = re.compile(r"^[1-9][0-9]{0,18}$")
MAX_BIGINT = 2**63 - 1


def _action(name: str, summary: str, body: type[msgspec.Struct] | None = None) -> post:
    """``POST /api/webhooks/{id}/<name>``: an operator's action on one
    endpoint, answered 200; 404 for no such endpoint, and a body's failures
    when it takes one."""
    failures = BODY_FAILURES if body is not None else ()
    return post(
        f"/{{webhook_id:str}}/{name}",
        status_code=HTTP_200_OK,
        summary=summary,
        **admin_only(*failures, WEBHOOK_NOT_FOUND, SERVICE_UNAVAILABLE, body=body),
    )


class WebhookController(Resource):
    path = "/api/webhooks"
    tags = ["webhooks"]  # noqa: RUF012 - Litestar declares it as an instance attribute

    @post(
        "/",
        status_code=HTTP_201_CREATED,
        summary="Register an endpoint for signed deliveries of events",
        **admin_only(*BODY_FAILURES, SERVICE_UNAVAILABLE, body=CreateWebhookRequest),
    )
    async def register_webhook(self, request: AnyRequest) -> CreatedWebhookBody:
        data = await decode_body(request, CREATE_WEBHOOK)
        _check_url(data.url)
        _check_secret(data.secret)
        webhooks = services_of(request.app.state).webhooks
        webhook, secret = await webhooks.register(
            url=data.url,
            events=list(dict.fromkeys(data.events)),
            secret=data.secret,
            actor=request_caller(request),
        )
        return CreatedWebhookBody(**msgspec.structs.asdict(webhook_body(webhook)), secret=secret)

    @_action(
        "secret",
        "Rotate an endpoint's secret: the old one signs beside it for a while",
        RotateSecretRequest,
    )
    async def rotate_secret(self, request: AnyRequest, webhook_id: str) -> RotatedSecretBody:
        data = await decode_body(request, ROTATE_SECRET)
        _check_secret(data.secret)
        webhooks = services_of(request.app.state).webhooks
        secret, until = await webhooks.rotate(
            _webhook_id(webhook_id),
            secret=data.secret,
            previous_valid_for=data.previous_valid_seconds,
            actor=request_caller(request),
        )
        return RotatedSecretBody(id=int(webhook_id), secret=secret, previous_valid_until=until)

    @get(
        "/",
        summary="Endpoints with their delivery state, by id, a page at a time",
        **admin_only(INVALID_REQUEST, SERVICE_UNAVAILABLE),
    )
    async def list_webhooks(
        self, request: AnyRequest, limit: str | None = LIMIT, after: str | None = AFTER
    ) -> WebhooksResponse:
        webhooks = services_of(request.app.state).webhooks
        # The cursor is an id, in the form of the claims list's.
        page, last = await webhooks.page(after=claim_cursor(after), limit=page_limit(limit))
        return WebhooksResponse([webhook_body(w) for w in page], next=encode_cursor(last))

    @get(
        "/{webhook_id:str}",
        summary="An endpoint's delivery state: failures, last error, next try, backlog, lag",
        **admin_only(WEBHOOK_NOT_FOUND, SERVICE_UNAVAILABLE),
    )
    async def get_webhook(self, request: AnyRequest, webhook_id: str) -> WebhookBody:
        webhooks = services_of(request.app.state).webhooks
        return webhook_body(await webhooks.get(_webhook_id(webhook_id)))

    @_action("enable", "Enable a disabled endpoint: it gets every event it missed, in order")
    async def enable_webhook(self, request: AnyRequest, webhook_id: str) -> WebhookBody:
        webhooks = services_of(request.app.state).webhooks
        return webhook_body(
            await webhooks.enable(_webhook_id(webhook_id), actor=request_caller(request))
        )

    @_action(
        "replay", "Deliver an endpoint's events again from an event id or a time", ReplayRequest
    )
    async def replay_webhook(self, request: AnyRequest, webhook_id: str) -> ReplayBody:
        data = await decode_body(request, REPLAY)
        webhooks = services_of(request.app.state).webhooks
        replay = await webhooks.replay(
            _webhook_id(webhook_id),
            from_event_id=data.from_event_id,
            from_time=data.from_time,
            actor=request_caller(request),
        )
        return ReplayBody(int(webhook_id), replay.since, data.from_event_id, replay.streams)

    @delete(
        "/{webhook_id:str}",
        summary="Remove an endpoint: nothing more is sent to it",
        **admin_only(WEBHOOK_NOT_FOUND, SERVICE_UNAVAILABLE),
    )
    async def delete_webhook(self, request: AnyRequest, webhook_id: str) -> None:
        if not await services_of(request.app.state).webhooks.delete(_webhook_id(webhook_id)):
            raise _not_found()
        # The endpoint's row, and its changed_by, are gone: the log keeps who.
        actor = request_caller(request)
        log.info(
            "webhook deleted", webhook=int(webhook_id), actor=actor.kind.value, name=actor.name
        )


def _webhook_id(text: str) -> int:
    """An id from the path; 404 for what can be no endpoint's id."""
    if not _WEBHOOK_ID.match(text) or int(text) > MAX_BIGINT:
        raise _not_found()
    return int(text)


def _check_secret(secret: str | None) -> None:
    """What the pattern cannot say: the key's length once decoded."""
    if secret is not None and not is_secret(secret):
        raise InvalidRequest("secret " + FIELD_RULES["secret"])


def webhook_body(webhook: Webhook) -> WebhookBody:
    return WebhookBody(
        id=webhook.id,
        url=_without_credentials(webhook.url),
        events=webhook.events,  # type: ignore[arg-type]  # the table's CHECK keeps them known
        status="disabled" if webhook.disabled_at else "enabled",
        created_at=webhook.created_at,
        failures=webhook.failures,
        last_error=webhook.last_error,
        last_error_at=webhook.last_error_at,
        last_delivered_at=webhook.delivered_at,
        disabled_at=webhook.disabled_at,
        disabled_reason=webhook.disabled_reason,
        pending=webhook.pending,
        backlog=webhook.backlog,
        next_attempt_at=webhook.next_attempt_at,
        lag_seconds=webhook.lag_seconds,
        created_by=webhook.created_by,
        changed_by=webhook.changed_by,
        changed_at=webhook.changed_at,
    )


def _check_url(url: str) -> None:
    """What the pattern cannot say: a host, and a port that is a port."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        port, parts = None, None
    if parts is None or not parts.hostname or (port is not None and port == 0):
        raise InvalidRequest("url " + FIELD_RULES["url"])
    if "@" in parts.netloc:  # sent as Basic auth, shown in lists, logged: never taken
        raise InvalidRequest("url must not carry credentials (user:password@)")


def _without_credentials(url: str) -> str:
    """An endpoint registered before credentials were refused, as it may be
    shown: its deliveries are refused, its password is not repeated."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


def _not_found() -> WebhookNotFound:
    return WebhookNotFound("no webhook has this id")
