"""Request bodies are decoded here, strictly, in one pass: msgspec straight
from bytes to the declared struct, so ``true``, ``5.0`` and ``"5"`` are not
integers, and the client learns which field is wrong and what it must be."""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec
from litestar import Request
from litestar.exceptions import InternalServerException

from flashsale.domain import InvalidRequest, UnsupportedMediaType

T = TypeVar("T")

FIELD_RULES = {
    "name": "must be 1-64 characters: ASCII letters, digits, '_', '-' or '.'",
    "coupon_name": "must be 1-64 characters: ASCII letters, digits, '_', '-' or '.'",
    "user_id": "must be 1-128 characters with no control characters, not only white space",
    "amount": "must be an integer from 1 to 1000000000",
}
_FIELD_PATH = re.compile(r"at `\$\.(\w+)")
_MISSING = re.compile(r"missing required field `(\w+)`")


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media in ("", "application/json") or media.endswith("+json")


async def decode_body(request: Request[Any, Any, Any], decoder: msgspec.json.Decoder[T]) -> T:
    if not _is_json(request.headers.get("content-type", "")):
        raise UnsupportedMediaType("the request body must be JSON (Content-Type: application/json)")
    try:
        body = await request.body()
    except InternalServerException:  # Litestar's "client disconnected prematurely"
        raise InvalidRequest("the request body was cut off or badly framed") from None
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as error:
        raise InvalidRequest(describe(str(error))) from None
    except (msgspec.DecodeError, UnicodeDecodeError):  # invalid UTF-8 raises the latter
        raise InvalidRequest("the request body is not valid JSON") from None
    except RecursionError:  # msgspec's guard against deeply nested unknown fields
        raise InvalidRequest("the request body is nested too deeply") from None


def describe(msgspec_message: str) -> str:
    """A message that names the field and its rule, from msgspec's text."""
    if missing := _MISSING.search(msgspec_message):
        field = missing[1]
        return f"{field} is required and {FIELD_RULES.get(field, 'must be set')}"
    if path := _FIELD_PATH.search(msgspec_message):
        field = path[1]
        rule = FIELD_RULES.get(field)
        return f"{field} {rule}" if rule else f"unexpected value at {field}"
    return "the request body must be a JSON object"
