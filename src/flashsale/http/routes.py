"""The endpoints of the original design. Each turns JSON into a call of the
service and returns what the service returned; errors go through errors.py."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, HttpMethod, Request, Response, get, post, route
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from litestar.response import Stream
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from flashsale.domain import Coupon, DomainError
from flashsale.http.auth import require_admin
from flashsale.http.body import decode_body
from flashsale.http.coupon_stream import coupon_stream
from flashsale.http.errors import domain_error
from flashsale.http.listing_routes import AFTER, LIMIT, LIST_COUPONS_DOCS, coupons_page
from flashsale.http.listing_schemas import CouponsPageResponse
from flashsale.http.openapi import (
    CLAIM_DOCS,
    COUPON_NOT_FOUND,
    CREATE_COUPON_DOCS,
    HEALTH_DOCS,
    SERVICE_UNAVAILABLE,
    documented,
)
from flashsale.http.paths import require_coupon_name
from flashsale.http.readers import browser_of
from flashsale.http.schemas import (
    ClaimRequest,
    ClaimResponse,
    CouponResponse,
    CreateCouponRequest,
    HealthResponse,
)
from flashsale.service import CouponService, deadline

CREATE_COUPON = msgspec.json.Decoder(CreateCouponRequest)
CLAIM = msgspec.json.Decoder(ClaimRequest)
AnyRequest = Request[Any, Any, Any]


def service_of(state: State) -> CouponService:
    service: CouponService = state.service
    return service


def coupon_response(coupon: Coupon) -> CouponResponse:
    return CouponResponse(
        name=coupon.name,
        amount=coupon.amount,
        remaining_amount=coupon.remaining_amount,
        claimed_by=coupon.claimed_by,
    )


class CouponController(Controller):
    path = "/api/coupons"
    tags = ["coupons"]  # noqa: RUF012 - Litestar declares it as an instance attribute

    # Litestar 2 answers OPTIONS itself with the methods of the first handler
    # registered on a path (litestar#4169, fixed in 3.0), so OPTIONS
    # /api/coupons would leave out the listing GET. This handler takes its
    # place; it must be registered first on "/", and handlers register in
    # the order of their names, hence "allow" (tests/e2e/test_api_contract.py).
    @route(
        "/",
        http_method=HttpMethod.OPTIONS,
        status_code=HTTP_204_NO_CONTENT,
        include_in_schema=False,
    )
    async def allow(self) -> Response[None]:
        return Response(
            None, status_code=HTTP_204_NO_CONTENT, headers={"Allow": "GET, OPTIONS, POST"}
        )

    @post(
        "/",
        status_code=HTTP_201_CREATED,
        summary="Create a coupon with a fixed stock",
        guards=[require_admin],
        **CREATE_COUPON_DOCS,
    )
    async def create_coupon(self, request: AnyRequest) -> CouponResponse:
        data = await decode_body(request, CREATE_COUPON)
        coupon = await service_of(request.app.state).create_coupon(data.name, data.amount)
        return coupon_response(coupon)

    @get("/", summary="Coupons with their stock, by name, a page at a time", **LIST_COUPONS_DOCS)
    async def list_coupons(
        self, state: State, limit: str | None = LIMIT, after: str | None = AFTER
    ) -> CouponsPageResponse:
        return await coupons_page(state, limit, after)

    @post("/claim", status_code=HTTP_200_OK, summary="Claim a coupon for a user", **CLAIM_DOCS)
    async def claim_coupon(self, request: AnyRequest) -> Response[Any]:
        data = await decode_body(request, CLAIM)
        try:
            await service_of(request.app.state).claim(data.coupon_name, data.user_id)
        except DomainError as error:
            # Most answers in a rush are sold_out: answered here, they skip
            # Litestar's exception middleware (re-raise, handler lookup).
            return domain_error(request, error)
        return Response(ClaimResponse(user_id=data.user_id, coupon_name=data.coupon_name))

    @get(
        "/{name:str}",
        summary="A coupon with its remaining stock and claimers (streamed)",
        **documented(
            COUPON_NOT_FOUND,
            SERVICE_UNAVAILABLE,
            responses={200: ResponseSpec(CouponResponse, description="the coupon, streamed")},
        ),
    )
    async def get_coupon(self, state: State, name: str) -> Stream:
        require_coupon_name(name)
        # The deadline covers opening the snapshot; 404 and 503 are decided there.
        async with deadline(service_of(state).request_timeout):
            return await coupon_stream(browser_of(state), name)


@get(
    "/health",
    summary="200 when the database answers, 503 when it does not",
    tags=["health"],
    **HEALTH_DOCS,
)
async def health(state: State) -> HealthResponse:
    await service_of(state).check_health()
    return HealthResponse(status="ok", database="ok")
