"""Names that arrive in a URL path: anything can be there (NUL, invalid
UTF-8, 10,000 characters), but only a valid coupon name can name a coupon."""

from __future__ import annotations

import msgspec

from flashsale.domain import CouponNotFound
from flashsale.http.schemas import CouponName


def require_coupon_name(name: str) -> None:
    """404 without asking the database when ``name`` breaks the naming rule
    (PostgreSQL would reject a NUL with an error, not an empty answer)."""
    try:
        msgspec.convert(name, CouponName)
    except msgspec.ValidationError:
        raise CouponNotFound(
            "no coupon has this name: names are 1-64 of A-Z a-z 0-9 _ - ."
        ) from None
