"""The shared vocabulary of the OpenAPI document: the failures routes can
answer, the ``documented`` helper each route's decorator uses beside its
handler, and the post-processing every route gets.

Litestar documents a route's success response from its return type. The rest
is declared with one argument per decorator::

    @post("/claim", ..., **documented(*BODY_FAILURES, COUPON_NOT_FOUND, body=ClaimRequest))

``documented`` takes the failures a route can answer (each a status, an
``error`` code and when it happens; several codes may share a status) and,
for handlers that decode the raw body themselves (``http/requests.py``), the
msgspec struct of the body. ``complete_schema`` (a startup hook) then adds,
to every route's responses, X-Request-ID, Retry-After on 503, and our error
body where Litestar assumed its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import groupby
from typing import Any, cast

import msgspec
from litestar import Litestar
from litestar.enums import ParamType
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import (
    Example,
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    Operation,
    Parameter,
    Reference,
    RequestBody,
    Schema,
)

from flashsale.http.schemas import ErrorResponse

ADMIN_SECURITY = "adminToken"


@dataclass(frozen=True, slots=True)
class Failure:
    """One way a route can fail: the status, the ``error`` code, and when."""

    status: int
    code: str
    when: str


INVALID_REQUEST = Failure(
    400, "invalid_request", "the body or a parameter breaks its rule (the message names it)"
)
UNAUTHORIZED = Failure(
    401,
    "unauthorized",
    "no credential where one is needed, or a bearer token that is not valid (docs/access.md)",
)
FORBIDDEN = Failure(
    403, "forbidden", "the credential is valid but may not do this (docs/access.md)"
)
COUPON_NOT_FOUND = Failure(404, "coupon_not_found", "no coupon has this name")
COUPON_EXISTS = Failure(409, "coupon_exists", "a coupon with this name exists")
ALREADY_CLAIMED = Failure(409, "already_claimed", "this user holds this coupon")
SOLD_OUT = Failure(409, "sold_out", "no stock left")
NOT_STARTED = Failure(409, "not_started", "the sale's window has not opened yet")
SALE_ENDED = Failure(409, "sale_ended", "the sale's window has closed (at or after ends_at)")
PAUSED = Failure(409, "paused", "the sale is paused")
ENTRIES_CLOSED = Failure(
    409, "entries_closed", "a raffle past draw_at whose draw is not done yet (docs/raffle.md)"
)
RAFFLE_DRAWN = Failure(
    409, "raffle_drawn", "the raffle was drawn and users still wait: units go down the waitlist"
)
RAFFLE_NEEDS_IDENTITIES = Failure(
    409, "raffle_needs_identities", "a raffle needs identified entrants (not CLAIM_AUTH=open)"
)
RAFFLE_ENTRIES_EXIST = Failure(
    409, "raffle_entries_exist", "allocation and draw_at are fixed once anyone entered"
)
RAFFLE_DRAWING = Failure(
    409, "raffle_drawing", "the amount is fixed while the draw places its entrants"
)
INVALID_DRAW_AT = Failure(
    400, "invalid_draw_at", "draw_at missing for a raffle, in the past or outside the window"
)
CLAIM_NOT_FOUND = Failure(
    404,
    "claim_not_found",
    "this user holds no live claim on this coupon (an expired or released hold is gone)",
)
ALREADY_REDEEMED = Failure(409, "already_redeemed", "the claim is redeemed")
AMOUNT_BELOW_CLAIMED = Failure(
    409, "amount_below_claimed", "the new amount is below the number of live claims"
)
WEBHOOK_NOT_FOUND = Failure(404, "webhook_not_found", "no webhook has this id")
PAYLOAD_TOO_LARGE = Failure(413, "payload_too_large", "the body is over 64 KiB")
UNSUPPORTED_MEDIA_TYPE = Failure(
    415, "unsupported_media_type", "a Content-Type that is not JSON (none is taken as JSON)"
)
SERVICE_UNAVAILABLE = Failure(
    503,
    "service_unavailable",
    "the database is unreachable or saturated, or too many claims wait for this coupon; "
    "retry after Retry-After seconds",
)

IDEMPOTENCY_KEY_REUSED = Failure(
    422,
    "idempotency_key_reused",
    "the Idempotency-Key was used before with another request (method, path or body)",
)
IDEMPOTENCY_KEY_IN_USE = Failure(
    409,
    "idempotency_key_in_use",
    "the first request with this Idempotency-Key is still being decided after the lock "
    "timeout (a retry waits for it until then)",
)
TOO_MANY_KEYS = Failure(
    429,
    "too_many_keys",
    "this caller stored as many Idempotency-Keys as its quota allows until Retry-After "
    "(IDEMPOTENCY_KEYS_PER_IDENTITY, IDEMPOTENCY_KEYS_PER_CREDENTIAL); send the request "
    "without a key or later",
)
# What a route taking an Idempotency-Key can answer besides its own failures.
KEY_FAILURES = (INVALID_REQUEST, IDEMPOTENCY_KEY_REUSED, IDEMPOTENCY_KEY_IN_USE, TOO_MANY_KEYS)

# What any route that reads a JSON body can answer.
BODY_FAILURES = (INVALID_REQUEST, PAYLOAD_TOO_LARGE, UNSUPPORTED_MEDIA_TYPE)

# What a coupon's raffle fields can answer, created or changed alike (the
# service checks both the same way).
RAFFLE_FAILURES = (INVALID_DRAW_AT, RAFFLE_NEEDS_IDENTITIES)

_REQUEST_ID_HEADER = OpenAPIHeader(
    schema=Schema(type=cast(Any, "string")),
    required=True,
    description="The request's id: the client's X-Request-ID when it is 1-128 printable "
    "ASCII characters, else a new one. Log lines about the request carry it.",
)
# errors.py answers every error with ErrorResponse, a component once any route
# documents a failure (all of ours do).
_ERROR_REFERENCE = Reference(ref=f"#/components/schemas/{ErrorResponse.__name__}")
_RETRY_AFTER_HEADER = OpenAPIHeader(
    schema=Schema(type=cast(Any, "integer"), minimum=0),
    description="Seconds to wait before retrying",
    required=True,
)
_WWW_AUTHENTICATE_HEADER = OpenAPIHeader(
    schema=Schema(type=cast(Any, "string")), description="`Bearer`"
)


_IDEMPOTENCY_KEY = Parameter(
    name="Idempotency-Key",
    param_in=ParamType.HEADER,
    required=False,
    schema=Schema(
        type=cast(Any, "string"), min_length=1, max_length=255, pattern="^[\\x20-\\x7e]+$"
    ),
    description="A key the client makes for this request (1-255 printable ASCII characters, "
    "e.g. a UUID), unique per route. The first request with it runs and its answer is stored "
    "with its effect; a retry with the same key, path and body gets that answer back byte for "
    "byte, with `Idempotent-Replayed: true`, and changes nothing. Kept IDEMPOTENCY_TTL "
    "seconds (at least a day).",
)
_REPLAYED = "Idempotent-Replayed"
_REPLAYED_HEADER = OpenAPIHeader(
    schema=Schema(type=cast(Any, "string"), const="true"),
    description="Present on a replay: the stored answer of the request's first attempt",
)


def documented(
    *failures: Failure,
    body: type[msgspec.Struct] | None = None,
    responses: Mapping[int, ResponseSpec] | None = None,
    keyed: bool = False,
    optional_auth: bool = False,
) -> dict[str, Any]:
    """Keyword arguments for a route decorator: its failures, its body, any
    other response to declare (e.g. a streamed 200), and whether it takes an
    Idempotency-Key (its header and failures)."""
    if keyed:
        failures = tuple(dict.fromkeys((*failures, *KEY_FAILURES)))
    arguments: dict[str, Any] = {
        "responses": {**failure_responses(failures), **(responses or {})},
        "operation_class": _operation_class(body, keyed),
    }
    # optional_auth: a route anonymous callers may use in some modes (the
    # claim, a user's claims): 401 documented, no security requirement.
    if UNAUTHORIZED in failures and not optional_auth:
        arguments["security"] = [{ADMIN_SECURITY: []}]
    return arguments


def failure_responses(failures: Iterable[Failure]) -> dict[int, ResponseSpec]:
    """One response per status; codes sharing a status are listed together."""
    by_status = sorted(failures, key=lambda failure: failure.status)
    return {
        status: _failure_response(list(group))
        for status, group in groupby(by_status, key=lambda failure: failure.status)
    }


def _failure_response(failures: list[Failure]) -> ResponseSpec:
    description = "; ".join(f"`{failure.code}`: {failure.when}" for failure in failures)
    return ResponseSpec(
        data_container=ErrorResponse,
        description=description,
        generate_examples=False,
        examples=[
            Example(summary=f.code, value={"error": f.code, "message": f.when}) for f in failures
        ],
    )


def body_schema(struct: type[msgspec.Struct]) -> dict[str, Any]:
    """The body's JSON Schema as msgspec enforces it (OpenAPI 3.1 speaks
    JSON Schema 2020-12, so it goes in as is)."""
    _, components = msgspec.json.schema_components([struct])
    schema: dict[str, Any] = components[struct.__name__]
    return schema


def _operation_class(body: type[msgspec.Struct] | None, keyed: bool) -> type[Operation]:
    @dataclass
    class DocumentedOperation(Operation):
        def __post_init__(self) -> None:
            if keyed:
                self.parameters = [*(self.parameters or []), _IDEMPOTENCY_KEY]
                for response in (self.responses or {}).values():
                    if isinstance(response, OpenAPIResponse):
                        headers = {**(response.headers or {}), _REPLAYED: _REPLAYED_HEADER}
                        response.headers = headers
            if body is not None:
                schema = cast(Any, body_schema(body))
                self.request_body = RequestBody(
                    content={"application/json": OpenAPIMediaType(schema=schema)}, required=True
                )

    return DocumentedOperation


def complete_schema(app: Litestar) -> None:
    """Startup hook, for every route (documented or not): the headers every
    response has, and our error body where Litestar assumed its own 400 for
    a route with parameters (errors.py answers ``invalid_request``)."""
    openapi = app.openapi_schema
    for path_item in (openapi.paths or {}).values():
        for method in ("get", "put", "post", "delete", "patch"):
            operation: Operation | None = getattr(path_item, method, None)
            if operation is not None and operation.responses:
                _complete_responses(operation.responses)


def _complete_responses(responses: dict[str, Any]) -> None:
    for status, response in responses.items():
        if not isinstance(response, OpenAPIResponse):
            continue
        if status == "400" and _is_litestar_validation_error(response):
            response.description = f"`{INVALID_REQUEST.code}`: {INVALID_REQUEST.when}"
            response.content = {"application/json": OpenAPIMediaType(schema=_ERROR_REFERENCE)}
        headers = dict(response.headers or {})
        headers["X-Request-ID"] = _REQUEST_ID_HEADER
        if status in ("429", "503"):
            headers["Retry-After"] = _RETRY_AFTER_HEADER
        if status == "401":
            headers["WWW-Authenticate"] = _WWW_AUTHENTICATE_HEADER
        response.headers = headers


def _is_litestar_validation_error(response: OpenAPIResponse) -> bool:
    media = (response.content or {}).get("application/json")
    schema = media.schema if media else None
    return isinstance(schema, Schema) and "status_code" in (schema.properties or {})
