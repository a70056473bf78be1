"""Who is asking (``caller_of``) and who may do what (docs/access.md).

Callers: the operator (ADMIN_TOKEN), the shop's backend (BACKEND_TOKEN), an
end user (a JWT, http/end_users.py), or anonymous. A credential that is
presented must be valid: a bearer token that is none of these is 401 even
where anonymous callers are welcome (a client with a stale token hears so).

Admin routes are closed by default: without ADMIN_TOKEN they are open only
when the server listens on loopback only (APP_HOST) or ADMIN_OPEN=true;
the rule follows the listen address, not the client's, since behind a
proxy on the same host every client looks like loopback."""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from typing import Any

from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.handlers import BaseRouteHandler
from litestar.status_codes import HTTP_401_UNAUTHORIZED, HTTP_403_FORBIDDEN

from flashsale.config import ClaimAuth, Settings, verifies_jwts
from flashsale.domain import ANONYMOUS, Caller, CallerKind
from flashsale.http.credentials import Token, match, parse_tokens
from flashsale.http.end_users import EndUsers, Refused
from flashsale.http.errors import RequestError
from flashsale.http.openapi import FORBIDDEN, UNAUTHORIZED, Failure, documented

log = logging.getLogger("flashsale.auth")

_STATE_KEY = "access"
# The name of the operator every caller without a credential is while the
# admin routes are open (no ADMIN_TOKEN; loopback or ADMIN_OPEN=true): their
# keys and events are the operator's, as before issue 24. No token may be
# named so (credentials.py); claims and hidden claimers treat it as nobody.
OPEN_ADMIN = "admin-open"
CHALLENGE = {"WWW-Authenticate": "Bearer"}
UNAUTHORIZED_MESSAGE = (
    "this endpoint needs Authorization: Bearer <token> with a valid token (docs/access.md)"
)
CLOSED_MESSAGE = (
    "admin routes are closed: the server listens beyond loopback without ADMIN_TOKEN "
    "(set ADMIN_TOKEN, or ADMIN_OPEN=true to open them)"
)


class Unauthorized(RequestError):
    """No credential, or one that proves nothing: 401 with the challenge."""

    status = HTTP_401_UNAUTHORIZED
    code = "unauthorized"
    headers = CHALLENGE


class Forbidden(RequestError):
    """A valid credential that may not do this: 403."""

    status = HTTP_403_FORBIDDEN
    code = "forbidden"


@dataclass(frozen=True, slots=True)
class Access:
    """One worker's access rules, from the settings."""

    operators: tuple[Token, ...]
    backends: tuple[Token, ...]
    scrapers: tuple[Token, ...]
    users: EndUsers | None
    claim_auth: ClaimAuth
    admin_open: bool  # anonymous callers may use admin routes
    open_claim_reads: bool  # anonymous callers may read a user's claims (open mode)
    hide_claimers: bool
    credentials: bool  # any kind of credential is configured


def access_from(settings: Settings) -> Access:
    operators = parse_tokens(settings.admin_token, "admin")
    backends = parse_tokens(settings.backend_token, "backend")
    scrapers = parse_tokens(settings.metrics_token, "metrics")
    users = EndUsers(settings) if verifies_jwts(settings) else None
    loopback = listens_on_loopback(settings.app_host)
    reads = settings.open_claim_reads
    return Access(
        operators=operators,
        backends=backends,
        scrapers=scrapers,
        users=users,
        claim_auth=settings.claim_auth,
        admin_open=not operators and (loopback or settings.admin_open),
        open_claim_reads=settings.claim_auth is ClaimAuth.OPEN
        and (loopback if reads is None else reads),
        hide_claimers=settings.hide_claimers,
        credentials=bool(operators or backends or scrapers or users),
    )


def listens_on_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[] ")).is_loopback
    except ValueError:
        return False  # a name: it may resolve beyond loopback


def configure_access(state: State, settings: Settings) -> Access:
    """The worker's rules on the app's state, and the start-up log lines."""
    access = access_from(settings)
    state[_STATE_KEY] = access
    if not access.operators:
        if access.admin_open and settings.admin_open:
            log.warning("ADMIN_TOKEN is not set and ADMIN_OPEN=true: admin routes are open")
        elif access.admin_open:
            log.warning("ADMIN_TOKEN is not set: admin routes are open on loopback")
        else:
            log.warning(
                "ADMIN_TOKEN is not set: admin routes are closed (listening beyond loopback)"
            )
    return access


def configure_admin(state: State, settings: Settings) -> None:
    """configure_access without its result (the name main's callers use)."""
    configure_access(state, settings)


def access_of(state: State) -> Access:
    access: Access = state[_STATE_KEY]
    return access


def caller_of(state: State, authorization: str, address: str | None = None) -> Caller:
    """The caller an Authorization header's text proves; without a bearer
    token ANONYMOUS (with ``address``), or the operator OPEN_ADMIN while the
    admin routes are open. A bearer token that proves nothing raises
    Unauthorized (when any credential is configured: otherwise it is not
    looked at)."""
    access = access_of(state)
    presented = _bearer_token(authorization)
    if presented is None or not access.credentials:
        if access.admin_open:
            return Caller(CallerKind.OPERATOR, name=OPEN_ADMIN, address=address)
        return ANONYMOUS if address is None else Caller(CallerKind.ANONYMOUS, address=address)
    raw = presented.encode("latin-1")  # the wire's bytes: a UTF-8 token matches
    if (name := match(access.operators, raw)) is not None:
        return Caller(CallerKind.OPERATOR, name=name, address=address)
    if (name := match(access.backends, raw)) is not None:
        return Caller(CallerKind.BACKEND, name=name, address=address)
    if access.users is not None and presented.count(".") == 2:
        try:
            return access.users.verify(presented, address)
        except Refused as refused:
            raise Unauthorized(str(refused)) from None
    raise Unauthorized(UNAUTHORIZED_MESSAGE)


def anonymous(caller: Caller) -> bool:
    """No credential: anonymous, or the operator only because admin routes
    are open (a claim in CLAIM_AUTH=user or backend still needs one)."""
    return caller.kind is CallerKind.ANONYMOUS or (
        caller.kind is CallerKind.OPERATOR and caller.name == OPEN_ADMIN
    )


def require_operator(caller: Caller, access: Access) -> None:
    """The operator's routes: coupons, webhooks, the dashboard."""
    if caller.kind is CallerKind.OPERATOR:
        return
    if caller.kind is CallerKind.ANONYMOUS and access.admin_open:
        return
    _refuse(caller, access)


def require_staff(caller: Caller, access: Access) -> None:
    """The operator's and the backend's: releases, redeems, the events feeds."""
    if caller.privileged or (caller.kind is CallerKind.ANONYMOUS and access.admin_open):
        return
    _refuse(caller, access)


def require_reader_of(caller: Caller, access: Access, user_id: str) -> None:
    """A user's claims: the operator, the backend, that user (and anonymous
    callers where open reads are on)."""
    if caller.privileged or (caller.kind is CallerKind.USER and caller.subject == user_id):
        return
    if caller.kind is CallerKind.ANONYMOUS and (access.open_claim_reads or access.admin_open):
        return
    if caller.kind is CallerKind.USER:
        raise Forbidden("an end user may read only their own claims")
    raise Unauthorized("reading a user's claims needs a bearer token (the backend's or the user's)")


def sees_claimers(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    """Whether claimers' ids are shown (HIDE_CLAIMERS hides them from
    anonymous readers; without it no credential is looked at)."""
    if not access_of(connection.app.state).hide_claimers:
        return True
    return not anonymous(connection_caller(connection))


def _refuse(caller: Caller, access: Access) -> None:
    if caller.kind is CallerKind.ANONYMOUS:
        if not access.operators and not access.admin_open:
            raise Unauthorized(CLOSED_MESSAGE)
        raise Unauthorized(UNAUTHORIZED_MESSAGE)
    raise Forbidden(f"a {caller.kind.value} token may not use this endpoint")


def connection_caller(connection: ASGIConnection[Any, Any, Any, Any]) -> Caller:
    client = connection.client
    return caller_of(
        connection.app.state,
        connection.headers.get("authorization", ""),
        client.host if client else None,
    )


def guard_operator(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    require_operator(connection_caller(connection), access_of(connection.app.state))


def guard_staff(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    require_staff(connection_caller(connection), access_of(connection.app.state))


def guard_scraper(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """/metrics: the operator, or a METRICS_TOKEN (checked before the JWTs)."""
    access = access_of(connection.app.state)
    presented = _bearer_token(connection.headers.get("authorization", ""))
    if presented is not None and match(access.scrapers, presented.encode("latin-1")):
        return
    require_operator(connection_caller(connection), access)


def admin_only(*failures: Failure, **options: Any) -> dict[str, Any]:
    """Keyword arguments for an operator's route: the guard and its
    documentation (the 401 and 403 and the security scheme) in one."""
    return {"guards": [guard_operator], **documented(*failures, UNAUTHORIZED, FORBIDDEN, **options)}


def staff_only(*failures: Failure, **options: Any) -> dict[str, Any]:
    """The same for the operator's and the backend's routes."""
    return {"guards": [guard_staff], **documented(*failures, UNAUTHORIZED, FORBIDDEN, **options)}


def _bearer_token(header: str) -> str | None:
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
