"""What comes in and what goes out, as msgspec structs. Constraints here are
the validation rules; msgspec enforces them while decoding, strictly (no
booleans or strings where an integer is declared)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

# ASCII letters, digits, "_", "-", "." - safe in a URL path segment as is.
CouponName = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=64,
        # "(?!\n)": Python's "$" (msgspec's) also matches before a final newline.
        pattern=r"^[A-Za-z0-9_.\-]+$(?!\n)",
        description="1-64 ASCII letters, digits, '_', '-' or '.'",
        examples=["PROMO_SUPER"],
    ),
]
# Any text without control characters (C0, DEL, C1): PostgreSQL text cannot
# hold NUL, and control characters in ids only ever mean a broken client.
_NOT_IN_IDS = r"\x00-\x1f\x7f-\x9f\u2028\u2029"
UserId = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=128,
        # ... nor line/paragraph separators, which some locales' [[:cntrl:]]
        # (the table's CHECK) counts; and at least one character that is not
        # white space: "   " is no one's id.
        pattern=rf"^[^{_NOT_IN_IDS}]*[^\s{_NOT_IN_IDS}][^{_NOT_IN_IDS}]*$(?!\n)",
        description="1-128 characters, no control characters, not only white space",
        examples=["user_12345"],
    ),
]
Amount = Annotated[
    int,
    msgspec.Meta(ge=1, le=1_000_000_000, description="Initial stock", examples=[100]),
]


class Body(msgspec.Struct):
    """Base of every request and response body."""


class CreateCouponRequest(Body):
    name: CouponName
    amount: Amount


class ClaimRequest(Body):
    user_id: UserId
    coupon_name: CouponName


class CouponResponse(Body):
    name: str
    amount: int
    remaining_amount: int
    claimed_by: list[str]


class ClaimResponse(Body):
    user_id: str
    coupon_name: str
    message: str = "coupon claimed"


class HealthResponse(Body):
    status: str
    database: str


class ErrorResponse(Body):
    """Every failure: ``error`` is a stable code (the two 409s of a claim
    differ here), ``message`` is for people."""

    error: str
    message: str


class ClaimItem(Body):
    user_id: str
    claimed_at: datetime


class ClaimsPageResponse(Body):
    claims: list[ClaimItem]
    next: str | None  # cursor for ?after=; null on the last page


class CouponItem(Body):
    name: str
    amount: int
    remaining_amount: int


class CouponsPageResponse(Body):
    coupons: list[CouponItem]
    next: str | None
