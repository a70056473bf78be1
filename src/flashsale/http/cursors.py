"""Opaque paging cursors. Clients pass back what ``next`` said; anything else
is a 400, never a 500 and never a query."""

from __future__ import annotations

import base64
import binascii
import re

from flashsale.domain import InvalidRequest

_BASE64URL = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_CLAIM_ID = re.compile(r"^[1-9][0-9]{0,18}$")
_COUPON_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_LIMIT = re.compile(r"^[0-9]{1,4}$")
MAX_BIGINT = 2**63 - 1


def encode_cursor(value: str | int) -> str:
    return base64.urlsafe_b64encode(str(value).encode()).rstrip(b"=").decode()


def claim_cursor(after: str | None) -> int:
    """The claim id a claims cursor stands for; 0 (before every claim) when absent."""
    if after is None:
        return 0
    text = _decode(after)
    if not _CLAIM_ID.match(text) or int(text) > MAX_BIGINT:
        raise _invalid()
    return int(text)


def coupon_cursor(after: str | None) -> str:
    """The coupon name a coupons cursor stands for; "" (before every name) when absent."""
    if after is None:
        return ""
    text = _decode(after)
    if not _COUPON_NAME.match(text):
        raise _invalid()
    return text


def page_limit(raw: str | None, *, default: int = 100, most: int = 1000) -> int:
    if raw is None:
        return default
    if not _LIMIT.match(raw) or not 1 <= int(raw) <= most:
        raise InvalidRequest(f"limit must be an integer from 1 to {most}")
    return int(raw)


def _decode(cursor: str) -> str:
    if not _BASE64URL.match(cursor):
        raise _invalid()
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return raw.decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise _invalid() from None


def _invalid() -> InvalidRequest:
    return InvalidRequest("after must be a cursor returned as next by this endpoint")
