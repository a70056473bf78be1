"""Paged reads: a coupon's claimers page by page, and the coupons themselves.
Pages are keyset pages: stable under concurrent claims, and as cheap on the
last page as on the first.

``GET /api/coupons`` is declared in routes.py's controller (next to the POST
on the same path, so that 405 answers list both methods) and calls
``coupons_page`` here."""

from __future__ import annotations

from typing import Any

from litestar import get
from litestar.datastructures import State
from litestar.params import Parameter

from flashsale.http.cursors import claim_cursor, coupon_cursor, encode_cursor, page_limit
from flashsale.http.listing_schemas import (
    ClaimItem,
    ClaimsPageResponse,
    CouponItem,
    CouponsPageResponse,
)
from flashsale.http.openapi import (
    COUPON_NOT_FOUND,
    INVALID_REQUEST,
    SERVICE_UNAVAILABLE,
    documented,
)
from flashsale.http.paths import require_coupon_name
from flashsale.http.readers import browser_of

LIMIT = Parameter(default=None, description="Items per page, 1-1000 (default 100)")
AFTER = Parameter(
    default=None,
    description="Cursor from the previous page's `next`; omit for the first page",
)
LIST_COUPONS_DOCS: dict[str, Any] = documented(INVALID_REQUEST, SERVICE_UNAVAILABLE)


async def coupons_page(state: State, limit: str | None, after: str | None) -> CouponsPageResponse:
    page = await browser_of(state).coupons_page(coupon_cursor(after), page_limit(limit))
    return CouponsPageResponse(
        coupons=[CouponItem(c.name, c.amount, c.remaining_amount) for c in page.coupons],
        next=None if page.next_after is None else encode_cursor(page.next_after),
    )


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
    page = await browser_of(state).claims_page(name, claim_cursor(after), page_limit(limit))
    return ClaimsPageResponse(
        claims=[ClaimItem(c.user_id, c.claimed_at) for c in page.claims],
        next=None if page.next_after is None else encode_cursor(page.next_after),
    )


LISTING_HANDLERS = [list_claims]
