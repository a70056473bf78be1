"""What arrives in a request, parsed in one place: JSON bodies (strictly, in
one pass), names in the path, paging cursors and limits. Anything malformed
is a 400 (or a 404 for a name no coupon can have), never a 500 and never a
query."""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import unquote

import msgspec
from litestar import Request
from litestar.exceptions import InternalServerException
from litestar.params import Parameter
from litestar.types import HTTPReceiveMessage, HTTPScope, Receive

from flashsale.domain import ClaimNotFound, CouponNotFound
from flashsale.http.errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from flashsale.http.schemas import (
    MAX_AMOUNT,
    ChangeCouponRequest,
    ClaimRequest,
    CouponName,
    CreateCouponRequest,
    CreateWebhookRequest,
    OwnClaimRequest,
    ReplayRequest,
    RotateSecretRequest,
    UserId,
)
from flashsale.service.ports import FEED_START, FeedPosition

T = TypeVar("T")
AnyRequest = Request[Any, Any, Any]

# msgspec straight from bytes to the declared struct, so ``true``, ``5.0``
# and ``"5"`` are not integers, and the client learns which field is wrong.
CREATE_COUPON = msgspec.json.Decoder(CreateCouponRequest)
CLAIM = msgspec.json.Decoder(ClaimRequest)
OWN_CLAIM = msgspec.json.Decoder(OwnClaimRequest)
# The keys a claim must have (decode_json's fast path for duplicate keys).
CLAIM_KEYS = len(ClaimRequest.__struct_fields__) - len(ClaimRequest.__struct_defaults__)
CHANGE_COUPON = msgspec.json.Decoder(ChangeCouponRequest)
CREATE_WEBHOOK = msgspec.json.Decoder(CreateWebhookRequest)
ROTATE_SECRET = msgspec.json.Decoder(RotateSecretRequest)
REPLAY = msgspec.json.Decoder(ReplayRequest)

_TIME_RULE = "must be an RFC 3339 date-time with an offset (2026-12-24T10:00:00Z), or null"
FIELD_RULES = {
    "name": "must be 1-64 characters: ASCII letters, digits, '_', '-' or '.'",
    "coupon_name": "must be 1-64 characters: ASCII letters, digits, '_', '-' or '.'",
    "user_id": "must be 1-128 characters with no control characters, not only white space",
    "amount": f"must be an integer from 1 to {MAX_AMOUNT}",
    "starts_at": _TIME_RULE,
    "ends_at": _TIME_RULE,
    "hold_seconds": "must be an integer from 10 to 86400, or null",
    "active": "must be true or false",
    "url": "must be an http:// or https:// URL with a host, at most 2048 characters",
    "secret": "must be whsec_ followed by the base64 of 24 to 64 random bytes",
    "previous_valid_seconds": "must be an integer from 0 to 2592000",
    "from_event_id": f"must be an integer from 1 to {2**63 - 1}",
    "from_time": _TIME_RULE,
    "events": "must be a non-empty list of event types: coupon_created, coupon_changed, "
    "claimed, released, expired, redeemed, waitlisted, raffle_drawn",
}
_FIELD_PATH = re.compile(r"at `\$\.(\w+)")
_MISSING = re.compile(r"missing required field `(\w+)`")
_UNKNOWN = re.compile(r"unknown field `(.*)`", re.DOTALL)


def is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media in ("", "application/json") or media.endswith("+json")


async def decode_body(request: AnyRequest, decoder: msgspec.json.Decoder[T]) -> T:
    if not is_json(request.headers.get("content-type", "")):
        raise UnsupportedMediaType(_NOT_JSON)
    try:
        body = await request.body()
    except InternalServerException:  # Litestar's "client disconnected prematurely"
        raise InvalidRequest(_CUT_OFF) from None
    return decode_json(body, decoder)


MAX_BODY_BYTES = 64 * 1024  # every route's limit (the app's request_max_body_size)
_NOT_JSON = "the request body must be JSON (Content-Type: application/json)"
_CUT_OFF = "the request body was cut off or badly framed"
_TOO_LARGE = "Request Entity Too Large"  # Litestar's own words for its limit


async def receive_json_body(
    scope: HTTPScope, receive: Receive, limit: int = MAX_BODY_BYTES
) -> bytes:
    """The body of a raw ASGI request, held to the same rules as a Litestar
    route's: a JSON media type (415), at most ``limit`` bytes whether announced
    by Content-Length or streamed in chunks (413), fully received (400)."""
    length = None
    for name, value in scope["headers"]:
        if name == b"content-type" and not is_json(value.decode("latin-1")):
            raise UnsupportedMediaType(_NOT_JSON)
        if name == b"content-length":
            length = value
    if length is not None and length.isdigit() and int(length) > limit:
        raise PayloadTooLarge(_TOO_LARGE)
    chunks: list[bytes] = []
    received = 0
    while True:
        message: HTTPReceiveMessage = await receive()  # type: ignore[assignment]
        if message["type"] == "http.disconnect":
            raise InvalidRequest(_CUT_OFF)
        chunk = message.get("body", b"")
        received += len(chunk)
        if received > limit:
            raise PayloadTooLarge(_TOO_LARGE)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


_NOT_JSON_BODY = "the request body is not valid JSON"
_TOO_DEEP = "the request body is nested too deeply"


def decode_json(body: bytes, decoder: msgspec.json.Decoder[T], *, required_keys: int = 0) -> T:
    """``body`` as ``decoder``'s struct, strictly: 400 for anything it
    refuses, and for a duplicate key anywhere in the body (msgspec, like most
    decoders, would keep the last: two readers could disagree on what was
    sent). ``required_keys``: how many keys the struct requires (the
    claim's), for the check's fast path."""
    try:
        decoded = decoder.decode(body)
    except msgspec.ValidationError as error:
        raise InvalidRequest(describe(str(error))) from None
    except (msgspec.DecodeError, UnicodeDecodeError):  # invalid UTF-8 raises the latter
        raise InvalidRequest(_NOT_JSON_BODY) from None
    except RecursionError:  # msgspec's guard against deeply nested unknown fields
        raise InvalidRequest(_TOO_DEEP) from None
    # A colon outside a string follows a key, so a body has at least as many
    # colons as keys. The struct decoded, so its required keys are there with
    # distinct names: as many colons as those means no other key, hence no
    # duplicate (the claim's common case: one count, no parse). Else, the
    # exact check: a second parse.
    if not required_keys or body.count(b":") != required_keys:
        check_unique_keys(body)
    return decoded


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique(pairs: list[tuple[str, Any]]) -> None:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen.add(key)


def check_unique_keys(body: bytes) -> None:
    """400 when a JSON object in ``body`` (valid JSON) repeats a key."""
    try:
        json.loads(body, object_pairs_hook=_unique)
    except _DuplicateKey as duplicate:
        raise InvalidRequest(f"the request body repeats the key {duplicate.key[:64]!r}") from None
    except RecursionError:
        raise InvalidRequest(_TOO_DEEP) from None
    except ValueError:
        raise InvalidRequest(_NOT_JSON_BODY) from None


def describe(msgspec_message: str) -> str:
    """A message that names the field and its rule, from msgspec's text."""
    if unknown := _UNKNOWN.search(msgspec_message):
        return f"{unknown[1][:64]!r} is not a field of this request"
    if missing := _MISSING.search(msgspec_message):
        field = missing[1]
        return f"{field} is required and {FIELD_RULES.get(field, 'must be set')}"
    if path := _FIELD_PATH.search(msgspec_message):
        field = path[1]
        rule = FIELD_RULES.get(field)
        return f"{field} {rule}" if rule else f"unexpected value at {field}"
    return "the request body must be a JSON object"


def require_coupon_name(name: str) -> None:
    """404 without asking the database when ``name`` (from a URL path, where
    anything can be: NUL, invalid UTF-8, 10,000 characters) breaks the naming
    rule (PostgreSQL would reject a NUL with an error, not an empty answer)."""
    try:
        msgspec.convert(name, CouponName)
    except msgspec.ValidationError:
        raise CouponNotFound(
            "no coupon has this name: names are 1-64 of A-Z a-z 0-9 _ - ."
        ) from None


def check_window(starts_at: datetime | None, ends_at: datetime | None) -> None:
    """400 before any query when a time has no UTC equivalent (year 1 at
    +04:00 is year 0 in UTC; 9999-12-31 at -01:00 is year 10000) or a window
    given whole ends before it starts (a change's window is judged with the
    stored ends by the database)."""
    for field, value in (("starts_at", starts_at), ("ends_at", ends_at)):
        if value is not None:
            try:
                value.astimezone(UTC)
            except OverflowError:
                raise InvalidRequest(f"{field} {_TIME_RULE} between years 1 and 9999") from None
    if starts_at is not None and ends_at is not None and ends_at <= starts_at:
        raise InvalidRequest("ends_at must be later than starts_at")


def path_coupon_name(raw: str) -> str:
    """A coupon name from a path the raw-path layer left percent-encoded."""
    name = _unquote(raw, CouponNotFound("no coupon has this name"))
    require_coupon_name(name)
    return name


def path_user_id(raw: str, *, missing: Exception) -> str:
    """A user id from a percent-encoded path segment (http/paths.py keeps
    '%2F' encoded so ids with '/' route as one segment). ``missing`` is what
    an id no user can have answers: 404 for a claim, 400 for a user's list."""
    user_id = _unquote(raw, missing)
    try:
        return msgspec.convert(user_id, UserId)
    except msgspec.ValidationError:
        raise missing from None


def no_claim() -> ClaimNotFound:
    return ClaimNotFound("no live claim for this user id on this coupon")


def _unquote(raw: str, failure: Exception) -> str:
    try:
        return unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise failure from None


# Paging: keyset pages behind opaque cursors. Clients pass back what ``next``
# said; anything else is a 400.
LIMIT = Parameter(default=None, description="Items per page, 1-1000 (default 100)")
AFTER = Parameter(
    default=None,
    description="Cursor from the previous page's `next`; omit for the first page",
)
_BASE64URL = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_CLAIM_ID = re.compile(r"^[1-9][0-9]{0,18}$")
_COUPON_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_LIMIT = re.compile(r"^[0-9]{1,4}$")
_SEQ = re.compile(r"^(?:0|[1-9][0-9]{0,18})$")
_FEED_POSITION = re.compile(r"^(0|[1-9][0-9]{0,19})\.(0|[1-9][0-9]{0,18})$")
MAX_BIGINT = 2**63 - 1
MAX_XID8 = 2**64 - 1


def encode_cursor(value: str | int | None) -> str | None:
    if value is None:
        return None
    return base64.urlsafe_b64encode(str(value).encode()).rstrip(b"=").decode()


def claim_cursor(after: str | None) -> int:
    """The claim id a claims cursor stands for; 0 (before every claim) when absent."""
    return _bigint_cursor(after, _CLAIM_ID)


def user_claim_cursor(after: str | None) -> int:
    """The claim id a user's claims cursor stands for (newest first: the page
    continues below it); above every claim id when absent."""
    return MAX_BIGINT if after is None else claim_cursor(after)


def coupon_cursor(after: str | None) -> str:
    """The coupon name a coupons cursor stands for; "" (before every name) when absent."""
    if after is None:
        return ""
    text = _decode_cursor(after)
    if not _COUPON_NAME.match(text):
        raise _invalid_cursor()
    return text


def feed_cursor(position: FeedPosition) -> str:
    """The events feed's cursor: "<xid>.<event id>", base64url like the others."""
    cursor = encode_cursor(f"{position.xid}.{position.event_id}")
    assert cursor is not None
    return cursor


def feed_position(after: str | None) -> FeedPosition:
    """The feed position an events cursor (``after``, or an SSE Last-Event-ID)
    stands for; before every event when absent."""
    if after is None:
        return FEED_START
    match = _FEED_POSITION.match(_decode_cursor(after))
    if match is None or int(match[1]) > MAX_XID8 or int(match[2]) > MAX_BIGINT:
        raise _invalid_cursor()
    return FeedPosition(int(match[1]), int(match[2]))


def seq_cursor(after: str | None) -> int:
    """The seq a coupon's events cursor stands for; 0 (before the first) when absent."""
    return _bigint_cursor(after, _SEQ)


def _bigint_cursor(after: str | None, digits: re.Pattern[str]) -> int:
    """The bigint a cursor stands for (``digits`` its form); 0 when absent."""
    if after is None:
        return 0
    text = _decode_cursor(after)
    if not digits.match(text) or int(text) > MAX_BIGINT:
        raise _invalid_cursor()
    return int(text)


def page_limit(raw: str | None, *, default: int = 100, most: int = 1000) -> int:
    if raw is None:
        return default
    if not _LIMIT.match(raw) or not 1 <= int(raw) <= most:
        raise InvalidRequest(f"limit must be an integer from 1 to {most}")
    return int(raw)


def _decode_cursor(cursor: str) -> str:
    if not _BASE64URL.match(cursor):
        raise _invalid_cursor()
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return raw.decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise _invalid_cursor() from None


def _invalid_cursor() -> InvalidRequest:
    return InvalidRequest("after must be a cursor returned as next by this endpoint")
