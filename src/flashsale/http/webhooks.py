"""``/api/webhooks`` (admin): register an endpoint, list them with their
delivery state, delete one. A secret goes in once and never comes out: no
answer, log line or error message carries it."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from litestar import delete, get, post
from litestar.status_codes import HTTP_201_CREATED

from flashsale.domain import WebhookNotFound
from flashsale.http.allow import Resource
from flashsale.http.auth import require_admin
from flashsale.http.context import services_of
from flashsale.http.errors import InvalidRequest
from flashsale.http.openapi import (
    BODY_FAILURES,
    SERVICE_UNAVAILABLE,
    UNAUTHORIZED,
    WEBHOOK_NOT_FOUND,
    documented,
)
from flashsale.http.requests import CREATE_WEBHOOK, FIELD_RULES, AnyRequest, decode_body
from flashsale.http.schemas import CreateWebhookRequest, WebhookBody, WebhooksResponse
from flashsale.service.ports import Webhook

_WEBHOOK_ID = re.compile(r"^[1-9][0-9]{0,18}$")
MAX_BIGINT = 2**63 - 1


class WebhookController(Resource):
    path = "/api/webhooks"
    tags = ["webhooks"]  # noqa: RUF012 - Litestar declares it as an instance attribute

    @post(
        "/",
        status_code=HTTP_201_CREATED,
        summary="Register an endpoint for signed deliveries of events",
        guards=[require_admin],
        **documented(*BODY_FAILURES, UNAUTHORIZED, SERVICE_UNAVAILABLE, body=CreateWebhookRequest),
    )
    async def register_webhook(self, request: AnyRequest) -> WebhookBody:
        data = await decode_body(request, CREATE_WEBHOOK)
        _check_url(data.url)
        webhooks = services_of(request.app.state).webhooks
        webhook = await webhooks.register(
            url=data.url, events=list(dict.fromkeys(data.events)), secret=data.secret
        )
        return webhook_body(webhook)

    @get(
        "/",
        summary="Every endpoint with its delivery state (disabled or not, last error)",
        guards=[require_admin],
        **documented(UNAUTHORIZED, SERVICE_UNAVAILABLE),
    )
    async def list_webhooks(self, request: AnyRequest) -> WebhooksResponse:
        webhooks = await services_of(request.app.state).webhooks.list()
        return WebhooksResponse([webhook_body(webhook) for webhook in webhooks])

    @delete(
        "/{webhook_id:str}",
        summary="Remove an endpoint: nothing more is sent to it",
        guards=[require_admin],
        **documented(UNAUTHORIZED, WEBHOOK_NOT_FOUND, SERVICE_UNAVAILABLE),
    )
    async def delete_webhook(self, request: AnyRequest, webhook_id: str) -> None:
        if not _WEBHOOK_ID.match(webhook_id) or int(webhook_id) > MAX_BIGINT:
            raise _not_found()
        if not await services_of(request.app.state).webhooks.delete(int(webhook_id)):
            raise _not_found()


def webhook_body(webhook: Webhook) -> WebhookBody:
    return WebhookBody(
        id=webhook.id,
        url=webhook.url,
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


def _not_found() -> WebhookNotFound:
    return WebhookNotFound("no webhook has this id")
