"""Response bodies of the paged reads."""

from __future__ import annotations

from datetime import datetime

from flashsale.http.schemas import Body


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
