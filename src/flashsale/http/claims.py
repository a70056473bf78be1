"""Claims: ``POST /api/coupons/claim`` takes one, ``GET
/api/coupons/{name}/claims`` lists a coupon's claims a page at a time (keyset
pages: stable under concurrent claims, as cheap on the last page as on the first).

The claim is the one hot route of a sale, so it is answered by
``ClaimEndpoint``, a plain ASGI callable in front of Litestar, instead of by
Litestar's per-request machinery (routing, a Request object, parameter
parsing, response objects and the exception middleware cost about two thirds
of a worker's time on a claim; docs/benchmarks.md). It is the only
implementation of the route and keeps every rule of the Litestar routes: the
same structs and strict decoding (http/requests.py), the same error mapping and
bodies (http/errors.py), the same body limit and media type rules, and the
same use case under the same deadline. Request ids, metrics and the access log
come from RequestObserver, around it as around Litestar. The Litestar
declaration below documents it in /openapi.json and makes Litestar answer the
route's other methods (405, OPTIONS) as for any route.

A release (``DELETE /api/coupons/{name}/claims/{user_id}``) is answered there
too: at the height of a sale, when payments fail, releases come in storms
beside the claims, and each one through Litestar cost about as much server
time as three claims (docs/benchmarks.md). Same admin check (http/auth.py
is_admin), same path decoding (http/paths.py encoded_path and the handlers'
_claim_key), same error bodies."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any, NoReturn

import msgspec
from litestar import HttpMethod, Litestar, Response, delete, get, post, route
from litestar.datastructures import State
from litestar.enums import ScopeType
from litestar.openapi.datastructures import ResponseSpec
from litestar.status_codes import (
    HTTP_200_OK,
    HTTP_204_NO_CONTENT,
    HTTP_401_UNAUTHORIZED,
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

from flashsale.domain import (
    ClaimDecision,
    ClaimOutcome,
    DomainError,
    IdempotencyKey,
    raise_for_outcome,
    raise_for_release,
)
from flashsale.http import idempotency
from flashsale.http.auth import CHALLENGE, UNAUTHORIZED_MESSAGE, is_admin, require_admin
from flashsale.http.context import services_of
from flashsale.http.errors import INTERNAL_ERROR, RequestError, log_unexpected, status_of
from flashsale.http.idempotency import (
    RAW_HEADER,
    RAW_REPLAYED,
    answer_response,
    check_key,
    decided,
    encoded,
    fingerprint,
    once,
    raw_path,
    request_key,
)
from flashsale.http.openapi import (
    ALREADY_CLAIMED,
    ALREADY_REDEEMED,
    BODY_FAILURES,
    CLAIM_NOT_FOUND,
    COUPON_NOT_FOUND,
    INVALID_REQUEST,
    NOT_STARTED,
    PAUSED,
    SALE_ENDED,
    SERVICE_UNAVAILABLE,
    SOLD_OUT,
    UNAUTHORIZED,
    documented,
)
from flashsale.http.paths import encoded_path
from flashsale.http.requests import (
    AFTER,
    CLAIM,
    LIMIT,
    AnyRequest,
    claim_cursor,
    decode_json,
    encode_cursor,
    no_claim,
    page_limit,
    path_coupon_name,
    path_user_id,
    receive_json_body,
    require_coupon_name,
)
from flashsale.http.schemas import (
    ClaimBody,
    ClaimItem,
    ClaimRequest,
    ClaimResponse,
    ClaimsPageResponse,
    ErrorResponse,
)
from flashsale.service.ports import ClaimView

CLAIM_PATH = "/api/coupons/claim"
CEILING_PATH = "/bench/claim-ceiling"  # flashsale bench only: a claim minus the database
Claim = Callable[[ClaimRequest], Awaitable[ClaimDecision]]  # the use case a path runs

RELEASE_TEMPLATE = "/api/coupons/{name}/claims/{user_id}"  # as Litestar's router names it
_RELEASE_PATH = re.compile(r"^/api/coupons/([^/]+)/claims/([^/]+)/?$")

_ENCODER = msgspec.json.Encoder()
_JSON_HEADERS = [(b"content-type", b"application/json")]
_UNAUTHORIZED = (
    HTTP_401_UNAUTHORIZED,
    _JSON_HEADERS + [(k.lower().encode(), v.encode()) for k, v in CHALLENGE.items()],
    _ENCODER.encode(ErrorResponse(error="unauthorized", message=UNAUTHORIZED_MESSAGE)),
)


class ClaimEndpoint:
    """The ASGI layer that answers claims and hands every other request on."""

    def __init__(self, app: Litestar, inner: ASGIApp, *, ceiling: bool = False) -> None:
        self._state = app.state
        self._inner = inner
        self._routes: dict[str, Claim] = {CLAIM_PATH: self._claim, CLAIM_PATH + "/": self._claim}
        if ceiling:
            self._routes[CEILING_PATH] = _no_database

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP:
            if scope["method"] == "POST" and (claim := self._routes.get(scope["path"])):
                scope["path_template"] = scope["path"].rstrip("/")  # as Litestar's router sets it
                # The one extra step of a claim without a key: this scan.
                keys = [value for name, value in scope["headers"] if name == RAW_HEADER]
                if keys and claim is not _no_database:
                    await _send(send, *await self._answer_keyed(scope, receive, keys))
                else:
                    await _send(send, *await _answer(scope, receive, claim))
                return
            if scope["method"] == "DELETE" and (one := _RELEASE_PATH.match(encoded_path(scope))):
                scope["path_template"] = RELEASE_TEMPLATE
                await _send(send, *await self._release(scope, *one.groups()))
                return
        await self._inner(scope, receive, send)

    async def _release(self, scope: HTTPScope, name: str, user_id: str) -> Answer:
        """204, or the error the Litestar route would answer."""
        if not is_admin(self._state, _header(scope, b"authorization")):
            return _UNAUTHORIZED
        keys = [value for key, value in scope["headers"] if key == RAW_HEADER]
        try:
            value = check_key(keys)
            coupon_name, user = _claim_key(name, user_id)
            if value is not None:
                return await self._release_keyed(scope, coupon_name, user, value)
            coupons = services_of(self._state).coupons
            await coupons.release_claim(coupon_name=coupon_name, user_id=user)
        except (DomainError, RequestError) as error:
            return _error_answer(error)
        except Exception as error:
            log_unexpected(error, RELEASE_TEMPLATE, "DELETE")
            return HTTP_500_INTERNAL_SERVER_ERROR, _JSON_HEADERS, _ENCODER.encode(INTERNAL_ERROR)
        return HTTP_204_NO_CONTENT, [], b""

    async def _release_keyed(
        self, scope: HTTPScope, coupon_name: str, user_id: str, value: bytes
    ) -> Answer:
        """A release with an Idempotency-Key, answered from the decision kept
        with it (a DELETE's body, if any, is not read: not fingerprinted)."""
        digest = fingerprint("DELETE", raw_path(scope), b"")
        key = IdempotencyKey(idempotency.RELEASE_CLAIM, value.decode("ascii"), digest)
        coupons = services_of(self._state).coupons
        decision = await coupons.release_claim_once(
            coupon_name=coupon_name, user_id=user_id, key=key
        )
        check = partial(
            raise_for_release, decision.outcome, coupon_name=coupon_name, user_id=user_id
        )
        answer = decided(check, HTTP_204_NO_CONTENT, bytes, replayed=decision.replayed)
        headers = [] if answer.status == HTTP_204_NO_CONTENT else _JSON_HEADERS
        return answer.status, [*headers, RAW_REPLAYED] if answer.replayed else headers, answer.body

    async def _claim(self, data: ClaimRequest) -> ClaimDecision:
        coupons = services_of(self._state).coupons  # the lifespan's, whichever is current
        return await coupons.claim(coupon_name=data.coupon_name, user_id=data.user_id)

    async def _answer_keyed(
        self, scope: HTTPScope, receive: Receive, keys: list[bytes]
    ) -> tuple[int, Headers, bytes]:
        """A claim with an Idempotency-Key: its answer rendered from the
        decision stored with the key, whether this request made it or not."""
        try:
            value = check_key(keys)
            assert value is not None
            body = await receive_json_body(scope, receive)
            data = decode_json(body, CLAIM)
            digest = fingerprint("POST", raw_path(scope), body)
            key = IdempotencyKey(idempotency.CLAIM, value.decode("ascii"), digest)
            coupons = services_of(self._state).coupons
            decision = await coupons.claim_once(
                coupon_name=data.coupon_name, user_id=data.user_id, key=key
            )
        except (DomainError, RequestError) as error:
            return _error_answer(error)
        except Exception as error:
            log_unexpected(error, scope.get("path_template"), scope["method"])
            return HTTP_500_INTERNAL_SERVER_ERROR, _JSON_HEADERS, _ENCODER.encode(INTERNAL_ERROR)
        return claim_answer(data, decision)


Headers = list[tuple[bytes, bytes]]
Answer = tuple[int, Headers, bytes]  # status, headers, body


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


async def _answer(scope: HTTPScope, receive: Receive, claim: Claim) -> Answer:
    """Status, headers and body, as the Litestar routes would answer them."""
    try:
        data = decode_json(await receive_json_body(scope, receive), CLAIM)
        decision = await claim(data)
    except (DomainError, RequestError) as error:
        return _error_answer(error)
    except Exception as error:
        log_unexpected(error, scope.get("path_template"), scope["method"])
        return HTTP_500_INTERNAL_SERVER_ERROR, _JSON_HEADERS, _ENCODER.encode(INTERNAL_ERROR)
    return HTTP_200_OK, _JSON_HEADERS, _granted(data, decision)


def claim_answer(data: ClaimRequest, decision: ClaimDecision) -> tuple[int, Headers, bytes]:
    """A keyed claim's answer from its stored decision (http/idempotency.decided)."""
    if decision.outcome is ClaimOutcome.CLAIMED and not decision.replayed:
        # decided()'s own answer for a new grant, without its closures: the
        # same struct and encoder, so the same bytes as every replay of it.
        return HTTP_200_OK, _JSON_HEADERS, _granted(data, decision)

    check = partial(
        raise_for_outcome, decision.outcome, coupon_name=data.coupon_name, user_id=data.user_id
    )
    granted = partial(_granted, data, decision)
    answer = decided(check, HTTP_200_OK, granted, replayed=decision.replayed)
    headers = [*_JSON_HEADERS, RAW_REPLAYED] if answer.replayed else _JSON_HEADERS
    return answer.status, headers, answer.body


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


async def _no_database(_: ClaimRequest) -> ClaimDecision:
    return _CEILING


@post(
    CLAIM_PATH,
    status_code=HTTP_200_OK,
    summary="Claim a coupon for a user",
    tags=["coupons"],
    **documented(
        *BODY_FAILURES,
        COUPON_NOT_FOUND,
        ALREADY_CLAIMED,
        SOLD_OUT,
        NOT_STARTED,
        SALE_ENDED,
        PAUSED,
        SERVICE_UNAVAILABLE,
        body=ClaimRequest,
        keyed=True,
        responses={200: ResponseSpec(ClaimResponse, description="claimed, and committed")},
    ),
)
async def claim_coupon() -> Response[Any]:
    """Declared for the document and the router; ClaimEndpoint answers every
    POST to this path before Litestar sees it."""
    _never_routed()


def _never_routed() -> NoReturn:
    raise RuntimeError("POST /api/coupons/claim is answered by ClaimEndpoint")


@get(
    "/api/coupons/{name:str}/claims",
    summary="A coupon's claims in claim order, a page at a time",
    tags=["coupons"],
    **documented(INVALID_REQUEST, COUPON_NOT_FOUND, SERVICE_UNAVAILABLE),
)
async def list_claims(
    state: State,
    name: str,
    limit: str | None = LIMIT,
    after: str | None = AFTER,
) -> ClaimsPageResponse:
    require_coupon_name(name)
    reads = services_of(state).reads
    page = await reads.claims_page(name, after=claim_cursor(after), limit=page_limit(limit))
    return ClaimsPageResponse(
        claims=[ClaimItem(c.user_id, c.claimed_at) for c in page.claims],
        next=encode_cursor(page.next_after),
    )


# One user's claim. {user_id} arrives percent-encoded (http/paths.py keeps
# '%2F' in one segment); the handlers decode it and the coupon name.
ONE_CLAIM = "/api/coupons/{name:str}/claims/{user_id:str}"


# Litestar 2 answers OPTIONS with the first handler's methods only
# (litestar#4169, see http/coupons.py): this one is registered first.
@route(
    ONE_CLAIM,
    http_method=HttpMethod.OPTIONS,
    status_code=HTTP_204_NO_CONTENT,
    include_in_schema=False,
)
async def allow_one_claim(name: str, user_id: str) -> Response[None]:
    return Response(
        None, status_code=HTTP_204_NO_CONTENT, headers={"Allow": "DELETE, GET, OPTIONS"}
    )


def claim_body(claim: ClaimView) -> ClaimBody:
    return ClaimBody(
        claim.user_id,
        claim.coupon_name,
        claim.status,
        claim.claimed_at,
        claim.expires_at,
        claim.redeemed_at,
    )


def _claim_key(name: str, user_id: str) -> tuple[str, str]:
    return path_coupon_name(name), path_user_id(user_id, missing=no_claim())


@get(
    ONE_CLAIM,
    summary="One user's live claim on a coupon (held or redeemed)",
    tags=["claims"],
    **documented(COUPON_NOT_FOUND, CLAIM_NOT_FOUND, SERVICE_UNAVAILABLE),
)
async def read_claim(state: State, name: str, user_id: str) -> ClaimBody:
    coupon_name, user = _claim_key(name, user_id)
    claim = await services_of(state).reads.claim(coupon_name=coupon_name, user_id=user)
    return claim_body(claim)


@delete(
    ONE_CLAIM,
    summary="Release a held claim: its unit is back in the stock (the order was cancelled)",
    tags=["claims"],
    guards=[require_admin],
    **documented(
        UNAUTHORIZED,
        COUPON_NOT_FOUND,
        CLAIM_NOT_FOUND,
        ALREADY_REDEEMED,
        SERVICE_UNAVAILABLE,
        keyed=True,
    ),
)
async def release_claim() -> None:
    """Declared for the document and the router (OPTIONS, 405); ClaimEndpoint
    answers every DELETE of this path before Litestar sees it."""
    raise RuntimeError("DELETE of one claim is answered by ClaimEndpoint")


@post(
    ONE_CLAIM + "/redeem",
    status_code=HTTP_200_OK,
    summary="Redeem a held claim (the checkout used the coupon): it never expires then",
    tags=["claims"],
    guards=[require_admin],
    **documented(
        UNAUTHORIZED,
        COUPON_NOT_FOUND,
        CLAIM_NOT_FOUND,
        ALREADY_REDEEMED,
        SERVICE_UNAVAILABLE,
        keyed=True,
        responses={200: ResponseSpec(ClaimBody, description="the claim, redeemed")},
    ),
)
async def redeem_claim(request: AnyRequest, name: str, user_id: str) -> Response[Any]:
    key = await request_key(request, idempotency.REDEEM_CLAIM)
    coupon_name, user = _claim_key(name, user_id)
    coupons = services_of(request.app.state).coupons
    if key is not None:
        keyed = once(key, HTTP_200_OK, encoded(claim_body))
        answer = await coupons.redeem_claim_once(keyed, coupon_name=coupon_name, user_id=user)
        return answer_response(answer)
    claim = await coupons.redeem_claim(coupon_name=coupon_name, user_id=user)
    return Response(claim_body(claim))


CLAIM_HANDLERS = [
    claim_coupon,
    list_claims,
    allow_one_claim,
    read_claim,
    release_claim,
    redeem_claim,
]
