"""Endpoints that exist only for ``flashsale bench`` (FLASHSALE_BENCH_ROUTES).

``POST /bench/claim-ceiling`` does everything a claim does in the HTTP layer
(same body decoder, same response struct, same server and middleware) and
nothing in the database: its throughput is the ceiling a claim could reach if
the database cost nothing."""

from __future__ import annotations

from litestar import post
from litestar.handlers import HTTPRouteHandler
from litestar.status_codes import HTTP_200_OK

from flashsale.config import Settings
from flashsale.http.requests import CLAIM, AnyRequest, decode_body
from flashsale.http.schemas import ClaimResponse


@post("/bench/claim-ceiling", status_code=HTTP_200_OK, include_in_schema=False)
async def claim_ceiling(request: AnyRequest) -> ClaimResponse:
    data = await decode_body(request, CLAIM)
    return ClaimResponse(user_id=data.user_id, coupon_name=data.coupon_name)


def bench_handlers(settings: Settings) -> list[HTTPRouteHandler]:
    """The bench endpoints when the setting is on; production gets none."""
    return [claim_ceiling] if settings.bench_routes else []
