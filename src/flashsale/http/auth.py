"""Who may administer coupons: with ADMIN_TOKEN set, admin routes need
``Authorization: Bearer <token>``; claims and reads stay open to everyone."""

from __future__ import annotations

import hmac
import logging
from typing import Any

from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.exceptions import NotAuthorizedException
from litestar.handlers import BaseRouteHandler

from flashsale.config import Settings
from flashsale.domain import ANONYMOUS, Caller, CallerKind
from flashsale.http.openapi import UNAUTHORIZED, Failure, documented

log = logging.getLogger("flashsale.auth")

_STATE_KEY = "admin_token"
CHALLENGE = {"WWW-Authenticate": "Bearer"}


def configure_admin(state: State, settings: Settings) -> None:
    """Remember the token for the guard; say so loudly when there is none."""
    state[_STATE_KEY] = settings.admin_token
    if settings.admin_token is None:
        log.warning("ADMIN_TOKEN is not set: anyone can create coupons")


UNAUTHORIZED_MESSAGE = "this endpoint needs Authorization: Bearer <admin token>"


def require_admin(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Litestar guard for admin routes: 401 unless the bearer token matches."""
    if not is_admin(connection.app.state, connection.headers.get("authorization", "")):
        raise NotAuthorizedException(detail=UNAUTHORIZED_MESSAGE, headers=CHALLENGE)


def admin_only(*failures: Failure, **options: Any) -> dict[str, Any]:
    """Keyword arguments for an admin route's decorator: the guard and its
    documentation (``documented`` with the 401 and the admin security
    scheme) in one, so that they cannot disagree."""
    return {"guards": [require_admin], **documented(*failures, UNAUTHORIZED, **options)}


def is_admin(state: State, authorization: str) -> bool:
    """Whether an Authorization header's text may administer (always, with
    no ADMIN_TOKEN); the guard's and ClaimEndpoint's one check."""
    expected: str | None = state.get(_STATE_KEY)
    if expected is None:
        return True
    presented = _bearer_token(authorization)
    # Constant-time comparison: response timing must not reveal the token's
    # prefix. Header text is the wire's bytes read as Latin-1: compare bytes,
    # so a token beyond ASCII matches when the client sends it as UTF-8.
    return presented is not None and hmac.compare_digest(
        presented.encode("latin-1"), expected.encode("utf-8")
    )


def caller_of(state: State, authorization: str) -> Caller:
    """The caller an Authorization header's text proves (the access issue
    fills in the backend and end users): an admin token is the operator."""
    if is_admin(state, authorization):
        return Caller(CallerKind.OPERATOR, name="admin")
    return ANONYMOUS


def _bearer_token(header: str) -> str | None:
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
