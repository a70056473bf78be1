"""The ASGI application. ``create_app`` is a factory (Granian runs it with
--factory); the lifespan owns the pool and the claim engine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar

from flashsale.claims.counted import CountedClaims
from flashsale.claims.engine import create_claim_engine
from flashsale.config import Settings, load_settings
from flashsale.http.auth import configure_admin
from flashsale.http.bench_routes import bench_handlers
from flashsale.http.dashboard_routes import DASHBOARD_HANDLERS
from flashsale.http.docs_ui import swagger_assets
from flashsale.http.errors import EXCEPTION_HANDLERS
from flashsale.http.listing_routes import LISTING_HANDLERS
from flashsale.http.observability import (
    metrics_endpoint,
    observe_requests,
    pool_metrics,
)
from flashsale.http.openapi import complete_schema, openapi_config, openapi_json
from flashsale.http.routes import CouponController, health
from flashsale.logs import configure_logging, get_logger, protect_secrets
from flashsale.metrics import get_metrics
from flashsale.service import CouponService
from flashsale.storage.pool import create_pool
from flashsale.storage.store import CouponStore

MAX_BODY_BYTES = 64 * 1024

log = get_logger("flashsale.app")


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or load_settings()
    configure_logging(settings.log_level)
    protect_secrets(settings)
    metrics = get_metrics()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        configure_admin(app.state, settings)
        pool = await create_pool(settings)
        store = CouponStore(
            pool, settings.db_acquire_timeout, statement_timeout=settings.db_statement_timeout
        )
        engine = create_claim_engine(settings, store, metrics.observe_batch)
        service = CouponService(
            store, CountedClaims(engine, metrics), request_timeout=settings.request_timeout
        )
        app.state.service = service
        log.info("worker ready", strategy=settings.claim_strategy)
        try:
            yield
        finally:
            await service.close()  # claims already accepted, and every write sent, finish first
            await pool.close()

    app = Litestar(
        route_handlers=[
            CouponController,
            health,
            metrics_endpoint,
            openapi_json,
            swagger_assets(),
            *bench_handlers(settings),
            *LISTING_HANDLERS,
            *DASHBOARD_HANDLERS,
        ],
        lifespan=[lifespan, pool_metrics],
        logging_config=None,  # flashsale.logs owns logging (Litestar's would replace it)
        exception_handlers=EXCEPTION_HANDLERS,
        request_max_body_size=MAX_BODY_BYTES,
        openapi_config=openapi_config(),
        on_startup=[complete_schema],
    )
    return observe_requests(app, access=settings.log_access)
