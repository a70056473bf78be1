"""The endpoints of the original design. Each turns JSON into a call of the
service and returns what the service returned; errors go through errors.py."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from flashsale.domain import Coupon
from flashsale.http.body import decode_body
from flashsale.http.schemas import (
    ClaimRequest,
    ClaimResponse,
    CouponResponse,
    CreateCouponRequest,
    HealthResponse,
)
from flashsale.service import CouponService

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

    @post("/", status_code=HTTP_201_CREATED, summary="Create a coupon with a fixed stock")
    async def create_coupon(self, request: AnyRequest) -> CouponResponse:
        data = await decode_body(request, CREATE_COUPON)
        coupon = await service_of(request.app.state).create_coupon(data.name, data.amount)
        return coupon_response(coupon)

    @post("/claim", status_code=HTTP_200_OK, summary="Claim a coupon for a user")
    async def claim_coupon(self, request: AnyRequest) -> ClaimResponse:
        data = await decode_body(request, CLAIM)
        await service_of(request.app.state).claim(data.coupon_name, data.user_id)
        return ClaimResponse(user_id=data.user_id, coupon_name=data.coupon_name)

    @get("/{name:str}", summary="A coupon with its remaining stock and claimers")
    async def get_coupon(self, state: State, name: str) -> CouponResponse:
        return coupon_response(await service_of(state).get_coupon(name))


@get("/health", summary="200 when the database answers, 503 when it does not", tags=["health"])
async def health(state: State) -> HealthResponse:
    await service_of(state).check_health()
    return HealthResponse(status="ok", database="ok")
