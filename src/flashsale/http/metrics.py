"""``GET /metrics``: Prometheus text, summed over every worker process."""

from __future__ import annotations

from litestar import Response, get

from flashsale.http.auth import guard_scraper
from flashsale.metrics import CONTENT_TYPE, render_metrics


@get(
    "/metrics",
    media_type=CONTENT_TYPE,
    summary="Prometheus metrics, summed over all worker processes",
    tags=["observability"],
    sync_to_thread=True,  # reads every worker's metric files
    guards=[guard_scraper],  # the operator or a METRICS_TOKEN (docs/access.md)
)
def metrics_endpoint() -> Response[bytes]:
    return Response(render_metrics(), media_type=CONTENT_TYPE)
