"""``GET /health``: 200 when the database answers, 503 when it does not."""

from __future__ import annotations

from litestar import get
from litestar.datastructures import State

from flashsale.http.context import services_of
from flashsale.http.openapi import SERVICE_UNAVAILABLE, documented
from flashsale.http.schemas import HealthResponse


@get(
    "/health",
    summary="200 when the database answers, 503 when it does not",
    tags=["health"],
    **documented(SERVICE_UNAVAILABLE),
)
async def health(state: State) -> HealthResponse:
    await services_of(state).coupons.check_health()
    return HealthResponse(status="ok", database="ok")
