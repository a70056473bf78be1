"""The ASGI application. ``create_app`` is a factory (Granian runs it with
--factory); the lifespan owns the pool and the claim engine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.openapi import OpenAPIConfig

from flashsale import __version__
from flashsale.claims.engine import create_claim_engine
from flashsale.config import Settings, load_settings
from flashsale.http.errors import EXCEPTION_HANDLERS
from flashsale.http.routes import CouponController, health
from flashsale.service import CouponService
from flashsale.storage.pool import create_pool
from flashsale.storage.store import CouponStore

MAX_BODY_BYTES = 64 * 1024


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        pool = await create_pool(settings)
        store = CouponStore(pool, settings.db_acquire_timeout)
        service = CouponService(store, create_claim_engine(settings, store))
        app.state.service = service
        try:
            yield
        finally:
            await service.close()  # claims already accepted finish first
            await pool.close()

    return Litestar(
        route_handlers=[CouponController, health],
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,
        request_max_body_size=MAX_BODY_BYTES,
        openapi_config=OpenAPIConfig(title="flashsale", version=__version__),
    )
