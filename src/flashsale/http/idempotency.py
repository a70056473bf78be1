"""The Idempotency-Key header (the IETF httpapi draft, as Stripe runs it):
parsed and checked here, turned into the key the use cases store answers
under, and the stored answers turned back into responses.

Scope: a key is unique per route (method and path template, ``SCOPES``) and
per owner (``owner_of``): the operator's or backend's token (by its name),
an end user's ``sub``, or for an anonymous caller the user the request is
for. The stored key is a digest of the owner followed by the client's key
(``owned_key``), so one owner's key never answers nor blocks another's
request, and no SQL changes shape for it. The same key on another route is
another key; on the same route with another path or body it is refused
(422 idempotency_key_reused): the fingerprint is a digest of the method,
the raw path and the body's exact bytes, so a retry must resend the same
bytes (which is what retrying means). Each key counts against its caller's
quota (service/key_quota.py) before the request runs."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from functools import lru_cache
from typing import Any, TypeVar

import msgspec
from litestar import MediaType, Response
from litestar.datastructures import State

from flashsale.domain import Caller, CallerKind, DomainError, IdempotencyKey
from flashsale.http.auth import anonymous, caller_of
from flashsale.http.context import services_of
from flashsale.http.errors import InvalidRequest, status_of
from flashsale.http.limits import client_address_of
from flashsale.http.requests import AnyRequest
from flashsale.http.schemas import ErrorResponse
from flashsale.service.coupons import CouponService
from flashsale.service.ports import Answer, Once

R = TypeVar("R")

HEADER = "Idempotency-Key"
RAW_HEADER = b"idempotency-key"  # as ASGI servers pass header names
REPLAYED = "Idempotent-Replayed"
RAW_REPLAYED = (b"idempotent-replayed", b"true")

# One scope per keyed route: the method and the path template.
CREATE_COUPON = "POST /api/coupons"
CLAIM = "POST /api/coupons/claim"
CHANGE_COUPON = "PATCH /api/coupons/{name}"
RELEASE_CLAIM = "DELETE /api/coupons/{name}/claims/{user_id}"
REDEEM_CLAIM = "POST /api/coupons/{name}/claims/{user_id}/redeem"
SCOPES = (CREATE_COUPON, CLAIM, CHANGE_COUPON, RELEASE_CLAIM, REDEEM_CLAIM)

_KEY = re.compile(rb"[\x20-\x7e]{1,255}")
INVALID_KEY = f"{HEADER} must be 1-255 printable ASCII characters"
_ENCODER = msgspec.json.Encoder()


def check_key(values: Iterable[bytes]) -> bytes | None:
    """The header's one value, or None without it; 400 for anything else."""
    found: bytes | None = None
    for value in values:
        if found is not None or not _KEY.fullmatch(value):
            raise InvalidRequest(INVALID_KEY)
        found = value
    return found


def fingerprint(method: str, raw_path: bytes, body: bytes) -> bytes:
    return hashlib.sha256(b"%s %s\n%s" % (method.encode(), raw_path, body)).digest()


def raw_path(scope: Any) -> bytes:
    """The path as the client sent it (percent-encoding kept), no query."""
    path: bytes | None = scope.get("raw_path")
    return path.split(b"?", 1)[0] if path else scope["path"].encode()


async def request_key(
    request: AnyRequest, scope: str, user_id: str | None = None
) -> IdempotencyKey | None:
    """The key of a Litestar request, or None when it sent none; counted
    against the caller's quota (call it once the request is known valid).
    ``user_id``: the user the request is for, if any (an anonymous caller's
    keys are that user's)."""
    value = check_key(v.encode("latin-1") for v in request.headers.getall(HEADER.lower(), []))
    if value is None:
        return None
    state = request.app.state
    caller = request_caller(request)
    body = await request.body()
    digest = fingerprint(request.method, raw_path(request.scope), body)
    return admitted_key(
        state, caller, user_id, IdempotencyKey(scope, value.decode("ascii"), digest)
    )


def request_caller(request: AnyRequest) -> Caller:
    """Who makes a Litestar request (http/auth.py caller_of), with its
    client's address when anonymous."""
    authorization = request.headers.get("authorization", "")
    state = request.app.state
    return addressed(caller_of(state, authorization), request.scope, state)


def addressed(caller: Caller, scope: Any, state: State) -> Caller:
    """A caller without a credential (anonymous, or the open admin routes'
    operator) with its client's address, X-Forwarded-For's behind a trusted
    proxy (its keys' quota is per address); other callers as they are."""
    if not anonymous(caller) or caller.address is not None:
        return caller
    return replace(caller, address=client_address_of(state, scope))


def owner_of(caller: Caller, user_id: str | None, route: str) -> str:
    """Whose keys a request's are: the token's name for the operator and
    the backend, the ``sub`` of an end user, the user a request is for when
    the caller is anonymous (so one user's key never meets another's)."""
    if _credentialed(caller, route):
        return f"{caller.kind.value}:{caller.name}"
    if caller.kind is CallerKind.USER:
        return f"user:{caller.subject}"
    return f"anonymous:{user_id or ''}"


def _credentialed(caller: Caller, route: str) -> bool:
    """Whether a token owns the caller's keys. The open admin routes'
    operator (no credential) owns its admin requests' keys as the operator
    did before callers had names, but its claims are anyone's: owned by
    their user, like an anonymous caller's."""
    return caller.privileged and not (route == CLAIM and anonymous(caller))


@lru_cache(maxsize=4096)  # the backend's and busy users' owners: hashed once
def _owner_digest(owner: str) -> str:
    return hashlib.sha256(owner.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def owned_key(owner: str, key: IdempotencyKey) -> IdempotencyKey:
    """``key`` stored under its owner: a fixed-length digest of the owner
    (128 bits, so unambiguous, and no user id in the keys table), then the
    client's key (migrations/0019 widens the column's bound for it)."""
    return IdempotencyKey(key.scope, f"{_owner_digest(owner)}:{key.key}", key.fingerprint)


def admitted_key(
    state: State, caller: Caller, user_id: str | None, key: IdempotencyKey
) -> IdempotencyKey:
    """``key`` owned by its caller, once the caller's quota admits it: a
    token's by its name, an end user's by its sub, an anonymous caller's by
    its address (inventing user ids does not reset it)."""
    owner = owner_of(caller, user_id, key.scope)
    quota = services_of(state).key_quota
    if _credentialed(caller, key.scope):
        quota.admit(owner, credential=True)
    elif caller.kind is CallerKind.USER:
        quota.admit(owner, credential=False)
    else:
        quota.admit(f"address:{caller.address}", credential=False)
    return owned_key(owner, key)


def once(key: IdempotencyKey, status: int, body: Callable[[R], bytes]) -> Once[R]:
    """The key, and how a result becomes the answer stored with it."""

    def render(result: R | DomainError) -> Answer:
        if isinstance(result, DomainError):
            return error_answer(result)
        return Answer(status, body(result))

    return Once(key, render)


def error_answer(error: DomainError) -> Answer:
    status, _ = status_of(error)
    return Answer(status, _ENCODER.encode(ErrorResponse(error=error.code, message=error.message)))


def decided(
    check: Callable[[], None], status: int, body: Callable[[], bytes], *, replayed: bool
) -> Answer:
    """The answer of a decision kept with its key (claims and releases keep
    the decision, not bytes: claim_many_keyed stores it in the batch that makes it,
    where no Python runs). The first answer and every replay come from the
    same stored values through this one function, so they are byte for byte
    the same: ``check`` raises the decision's client error, if it is one."""
    try:
        check()
    except DomainError as error:
        answer = error_answer(error)
        return Answer(answer.status, answer.body, replayed)
    return Answer(status, body(), replayed)


def encoded(struct: Callable[[R], msgspec.Struct]) -> Callable[[R], bytes]:
    """A result's body: its response struct as JSON (as Litestar encodes it)."""
    return lambda result: _ENCODER.encode(struct(result))


async def respond(
    key: IdempotencyKey | None,
    status: int,
    struct: Callable[[R], msgspec.Struct],
    write: Callable[[Once[R] | None], Awaitable[R | Answer]],
) -> Response[Any]:
    """A write's response: ``write`` runs with no ``Once`` when the request
    sent no key (its result rendered as ``struct``, its client error raised
    to http/errors.py), or once under ``key`` (the stored answer's bytes)."""
    result = await write(None if key is None else once(key, status, encoded(struct)))
    if isinstance(result, Answer):
        return answer_response(result)
    return Response(struct(result), status_code=status)


async def write_coupons(
    request: AnyRequest,
    key: IdempotencyKey | None,
    status: int,
    struct: Callable[[R], msgspec.Struct],
    write: Callable[[CouponService, Once[R] | None, Caller], Awaitable[R | Answer]],
) -> Response[Any]:
    """A coupon write's response (``respond``): ``write`` gets the worker's
    CouponService and runs as the request's caller."""
    coupons = services_of(request.app.state).coupons
    actor = request_caller(request)
    return await respond(key, status, struct, lambda once: write(coupons, once, actor))


def answer_response(answer: Answer) -> Response[Any]:
    """The stored bytes, as sent the first time; a replay says so."""
    headers = {REPLAYED: "true"} if answer.replayed else None
    return Response(
        answer.body, status_code=answer.status, media_type=MediaType.JSON, headers=headers
    )
