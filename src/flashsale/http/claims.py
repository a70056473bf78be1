"""Claims: ``POST /api/coupons/claim`` takes one, ``GET
/api/coupons/{name}/claims`` lists a coupon's claims a page at a time (keyset
pages: stable under concurrent claims, as cheap on the last page as on the first)."""

from __future__ import annotations

from typing import Any

from litestar import Response, get, post
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from litestar.status_codes import HTTP_200_OK

from flashsale.domain import DomainError
from flashsale.http.context import services_of
from flashsale.http.errors import domain_error
from flashsale.http.openapi import (
    ALREADY_CLAIMED,
    BODY_FAILURES,
    COUPON_NOT_FOUND,
    INVALID_REQUEST,
    SERVICE_UNAVAILABLE,
    SOLD_OUT,
    documented,
)
from flashsale.http.requests import (
    AFTER,
    CLAIM,
    LIMIT,
    AnyRequest,
    claim_cursor,
    decode_body,
    encode_cursor,
    page_limit,
    require_coupon_name,
)
from flashsale.http.schemas import ClaimItem, ClaimRequest, ClaimResponse, ClaimsPageResponse


@post(
    "/api/coupons/claim",
    status_code=HTTP_200_OK,
    summary="Claim a coupon for a user",
    tags=["coupons"],
    **documented(
        *BODY_FAILURES,
        COUPON_NOT_FOUND,
        ALREADY_CLAIMED,
        SOLD_OUT,
        SERVICE_UNAVAILABLE,
        body=ClaimRequest,
        # The handler answers its own failures (a Response of either struct);
        # the success body is declared here.
        responses={200: ResponseSpec(ClaimResponse, description="claimed, and committed")},
    ),
)
async def claim_coupon(request: AnyRequest) -> Response[Any]:
    data = await decode_body(request, CLAIM)
    coupons = services_of(request.app.state).coupons
    try:
        await coupons.claim(coupon_name=data.coupon_name, user_id=data.user_id)
    except DomainError as error:
        # Most answers in a rush are sold_out: answered here, they skip
        # Litestar's exception middleware (re-raise, handler lookup).
        return domain_error(request, error)
    return Response(ClaimResponse(user_id=data.user_id, coupon_name=data.coupon_name))


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


CLAIM_HANDLERS = [claim_coupon, list_claims]
