"""``ClaimEndpoint``: the raw ASGI answer to the two routes of a sale's
storm, in front of Litestar.

The claim (``POST /api/coupons/claim``) is the one hot route of a sale, so it
is answered here instead of by Litestar's per-request machinery (routing, a
Request object, parameter parsing, response objects and the exception
middleware cost most of a worker's time on a claim: docs/benchmarks.md).
It is the only implementation of the route and keeps every rule of the
Litestar routes: the same structs and strict decoding (http/requests.py),
the same error mapping and bodies (http/errors.py), the same body limit and
media type rules, and the same use case under the same deadline. Request
ids, metrics and the access log come from RequestObserver, around it as
around Litestar. The Litestar declarations in http/claims.py
document both routes in /openapi.json and make Litestar answer their other
methods (405, OPTIONS) as for any route.

A release (``DELETE /api/coupons/{name}/claims/{user_id}``) is answered here
too: at the height of a sale, when payments fail, releases come in storms
beside the claims (docs/benchmarks.md). Same caller rules (http/auth.py
caller_of, require_staff; the claim's per CLAIM_AUTH, docs/access.md:
checked before the body is read), same path decoding (http/paths.py encoded_path and
http/claims.py claim_key), same error bodies.

Both answer with or without an Idempotency-Key through one path: the use
case returns the decision (stored with the key, when there is one) and
http/idempotency.decided renders it, so a first answer and its replays are
the same bytes.

A claim past its client's rate (http/limits.py, CLAIM_RATE) is answered 429
here before its body is read; with no rate set the check is one attribute
test."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial

import msgspec
from litestar import Litestar
from litestar.datastructures import State
from litestar.enums import ScopeType
from litestar.status_codes import (
    HTTP_200_OK,
    HTTP_202_ACCEPTED,
    HTTP_204_NO_CONTENT,
    HTTP_500_INTERNAL_SERVER_ERROR,
)
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    HTTPScope,
    Receive,
    Scope,
    Send,
)

from flashsale.config import ClaimAuth
from flashsale.domain import (
    CallerKind,
    ClaimDecision,
    ClaimOutcome,
    DomainError,
    IdempotencyKey,
    raise_for_outcome,
    raise_for_release,
)
from flashsale.http import idempotency
from flashsale.http.auth import (
    Forbidden,
    Unauthorized,
    access_of,
    anonymous,
    caller_of,
    require_staff,
)
from flashsale.http.claims import CEILING_PATH, CLAIM_PATH, RELEASE_TEMPLATE, claim_key
from flashsale.http.context import services_of
from flashsale.http.errors import INTERNAL_ERROR, RequestError, log_unexpected, status_of
from flashsale.http.idempotency import (
    RAW_HEADER,
    RAW_REPLAYED,
    addressed,
    admitted_key,
    check_key,
    decided,
    fingerprint,
)
from flashsale.http.idempotency import raw_path as request_path
from flashsale.http.limits import ClaimLimits
from flashsale.http.paths import encoded_path
from flashsale.http.requests import CLAIM, CLAIM_KEYS, OWN_CLAIM, decode_json, receive_json_body
from flashsale.http.schemas import (
    ClaimRequest,
    ClaimResponse,
    EnteredResponse,
    ErrorResponse,
    OwnClaimRequest,
)
from flashsale.service.ports import Answer as StoredAnswer

Headers = list[tuple[bytes, bytes]]
Answer = tuple[int, Headers, bytes]  # status, headers, body
# The use case a claim path runs: the request, and its key if it sent one.
Claim = Callable[[ClaimRequest, IdempotencyKey | None], Awaitable[ClaimDecision]]

_RELEASE_PATH = re.compile(r"^/api/coupons/([^/]+)/claims/([^/]+)/?$")
_ENCODER = msgspec.json.Encoder()
_JSON_HEADERS = [(b"content-type", b"application/json")]
_INTERNAL = (HTTP_500_INTERNAL_SERVER_ERROR, _JSON_HEADERS, _ENCODER.encode(INTERNAL_ERROR))
_NEEDS_CREDENTIAL = "CLAIM_AUTH={}: a claim needs Authorization: Bearer <token> (docs/access.md)"


class ClaimEndpoint:
    """The ASGI layer that answers claims and releases and hands every other
    request on."""

    def __init__(
        self,
        app: Litestar,
        inner: ASGIApp,
        *,
        ceiling: bool = False,
        limits: ClaimLimits | None = None,
    ) -> None:
        self._state = app.state
        self._inner = inner
        self._limits = limits
        self._routes: dict[str, Claim] = {CLAIM_PATH: self._claim, CLAIM_PATH + "/": self._claim}
        if ceiling:
            self._routes[CEILING_PATH] = _no_database

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP:
            if scope["method"] == "POST" and (claim := self._routes.get(scope["path"])):
                scope["path_template"] = scope["path"].rstrip("/")  # as Litestar's router sets it
                if self._limits and (refused := self._limits.refused(scope, self._state)):
                    await _send(send, *refused)
                    return
                answer = self._claim_answer(scope, receive, claim)
                await _send(send, *await _answered(scope, answer))
                return
            if scope["method"] == "DELETE" and (one := _RELEASE_PATH.match(encoded_path(scope))):
                scope["path_template"] = RELEASE_TEMPLATE
                await _send(send, *await self._release(scope, *one.groups()))
                return
        await self._inner(scope, receive, send)

    async def _claim(self, data: ClaimRequest, key: IdempotencyKey | None) -> ClaimDecision:
        coupons = services_of(self._state).coupons  # the lifespan's, whichever is current
        return await coupons.claim(coupon_name=data.coupon_name, user_id=data.user_id, key=key)

    async def _release(self, scope: HTTPScope, name: str, user_id: str) -> Answer:
        """204, or the error the Litestar route would answer."""
        return await _answered(scope, self._release_answer(scope, name, user_id))

    async def _release_answer(self, scope: HTTPScope, name: str, user_id: str) -> Answer:
        """A release's answer from its decision (a DELETE's body, if any, is
        not read: not fingerprinted)."""
        caller = caller_of(self._state, _header(scope, b"authorization"), _client(scope))
        require_staff(caller, access_of(self._state))
        value = check_key(_keys(scope))
        coupon_name, user = claim_key(name, user_id)
        key = _key(self._state, idempotency.RELEASE_CLAIM, value, "DELETE", scope, b"", user)
        coupons = services_of(self._state).coupons
        decision = await coupons.release_claim(
            coupon_name=coupon_name, user_id=user, key=key, actor=caller
        )
        check = partial(raise_for_release, decision.outcome, coupon_name=coupon_name, user_id=user)
        answer = decided(check, HTTP_204_NO_CONTENT, bytes, replayed=decision.replayed)
        headers = [] if answer.status == HTTP_204_NO_CONTENT else _JSON_HEADERS
        return _with_replayed(answer, headers)

    async def _claim_answer(self, scope: HTTPScope, receive: Receive, claim: Claim) -> Answer:
        """A claim's answer from its decision, with or without a key."""
        subject, own = self._claimant(scope)
        # The one extra step of a claim without a key: this scan.
        keys = _keys(scope)
        value = check_key(keys) if keys else None
        body = await receive_json_body(scope, receive)
        data = (
            _own_claim(body, subject) if own else decode_json(body, CLAIM, required_keys=CLAIM_KEYS)
        )
        if subject is not None and data.user_id != subject:
            raise Forbidden("an end user may claim only for the sub of their token")
        key = _key(self._state, idempotency.CLAIM, value, "POST", scope, body, data.user_id)
        return claim_answer(data, await claim(data, key))

    def _claimant(self, scope: HTTPScope) -> tuple[str | None, bool]:
        """Who the claim must be for (None: the body's user_id, whoever it
        is), and whether the body may leave user_id out (CLAIM_AUTH=user)."""
        access = access_of(self._state)
        authorization = _header(scope, b"authorization")
        if access.claim_auth is ClaimAuth.OPEN and not authorization:
            return None, False  # the original contract's claim, at its cost
        caller = caller_of(self._state, authorization, _client(scope))
        # The end user first, in as few tests as it takes: on Python 3.11 an
        # Enum member's look-up on its class costs 0.1-0.2 us (5 times a plain
        # class attribute's), and a new token's claim is where they add up.
        if caller.kind is CallerKind.USER:
            if access.claim_auth is ClaimAuth.BACKEND:
                raise Forbidden(
                    "CLAIM_AUTH=backend: only the backend's and the operator's tokens claim"
                )
            return caller.subject, access.claim_auth is ClaimAuth.USER
        if anonymous(caller):
            if access.claim_auth is ClaimAuth.OPEN:
                return None, False
            raise Unauthorized(_NEEDS_CREDENTIAL.format(access.claim_auth.value))
        return None, False  # the operator or the backend: for any user


def _own_claim(body: bytes, subject: str | None) -> ClaimRequest:
    """An end user's claim body; a missing user_id is the token's sub."""
    own: OwnClaimRequest = decode_json(body, OWN_CLAIM, required_keys=1)
    user = own.user_id if own.user_id is not None else subject
    assert user is not None
    return ClaimRequest(user_id=user, coupon_name=own.coupon_name)


def _client(scope: HTTPScope) -> str | None:
    client = scope.get("client")
    return client[0] if client else None


async def _answered(scope: HTTPScope, answer: Awaitable[Answer]) -> Answer:
    """``answer``, or the error the Litestar routes would answer instead."""
    try:
        return await answer
    except (DomainError, RequestError) as error:
        return _error_answer(error)
    except Exception as error:
        log_unexpected(error, scope.get("path_template"), scope["method"])
        return _INTERNAL


def _keys(scope: HTTPScope) -> list[bytes]:
    return [value for name, value in scope["headers"] if name == RAW_HEADER]


def _key(
    state: State,
    route: str,
    value: bytes | None,
    method: str,
    scope: HTTPScope,
    body: bytes,
    user_id: str,
) -> IdempotencyKey | None:
    """The request's key, owned by its caller and admitted by its quota
    (http/idempotency.py); the caller is looked up only for a keyed request."""
    if value is None:
        return None
    caller = addressed(caller_of(state, _header(scope, b"authorization")), scope, state)
    digest = fingerprint(method, request_path(scope), body)
    return admitted_key(
        state, caller, user_id, IdempotencyKey(route, value.decode("ascii"), digest)
    )


def _header(scope: HTTPScope, name: bytes) -> str:
    """A request header's text as Litestar reads it (Latin-1), or ''."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return ""


def _error_answer(error: DomainError | RequestError) -> Answer:
    status, extra = status_of(error)
    body = _ENCODER.encode(ErrorResponse(error=error.code, message=error.message))
    if extra is None:
        return status, _JSON_HEADERS, body
    return (
        status,
        _JSON_HEADERS + [(k.lower().encode(), v.encode()) for k, v in extra.items()],
        body,
    )


def claim_answer(data: ClaimRequest, decision: ClaimDecision) -> Answer:
    """A claim's answer from its decision (http/idempotency.decided)."""
    if decision.outcome is ClaimOutcome.ENTERED:
        entered = StoredAnswer(HTTP_202_ACCEPTED, _entered(data, decision), decision.replayed)
        return _with_replayed(entered, _JSON_HEADERS)
    if decision.outcome is ClaimOutcome.CLAIMED and not decision.replayed:
        # decided()'s own answer for a new grant, without its closures: the
        # same struct and encoder, so the same bytes as every replay of it.
        return HTTP_200_OK, _JSON_HEADERS, _granted(data, decision)
    check = partial(
        raise_for_outcome, decision.outcome, coupon_name=data.coupon_name, user_id=data.user_id
    )
    granted = partial(_granted, data, decision)
    answer = decided(check, HTTP_200_OK, granted, replayed=decision.replayed)
    return _with_replayed(answer, _JSON_HEADERS)


def _with_replayed(answer: StoredAnswer, headers: Headers) -> Answer:
    return answer.status, [*headers, RAW_REPLAYED] if answer.replayed else headers, answer.body


def _granted(data: ClaimRequest, decision: ClaimDecision) -> bytes:
    """A granted claim's body: the first answer, and every replay of it."""
    return _ENCODER.encode(
        ClaimResponse(
            user_id=data.user_id,
            coupon_name=data.coupon_name,
            claimed_at=decision.claimed_at,
            expires_at=decision.expires_at,
        )
    )


def _entered(data: ClaimRequest, decision: ClaimDecision) -> bytes:
    """A raffle's entry (202), the same bytes on every repeat: the decision's
    expires_at is the draw time (domain.ClaimOutcome)."""
    assert decision.expires_at is not None
    return _ENCODER.encode(
        EnteredResponse(
            user_id=data.user_id, coupon_name=data.coupon_name, draw_at=decision.expires_at
        )
    )


async def _send(send: Send, status: int, headers: Headers, body: bytes) -> None:
    # RFC 9110 8.6: no Content-Length on a 204.
    length = [] if status == HTTP_204_NO_CONTENT else [(b"content-length", str(len(body)).encode())]
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": status,
        "headers": [*headers, *length],
    }
    await send(start)
    message: HTTPResponseBodyEvent = {
        "type": "http.response.body",
        "body": body,
        "more_body": False,
    }
    await send(message)


_CEILING = ClaimDecision(ClaimOutcome.CLAIMED, datetime(2026, 1, 1, tzinfo=UTC))


async def _no_database(_: ClaimRequest, __: IdempotencyKey | None) -> ClaimDecision:
    return _CEILING
