"""The ASGI application, assembled from one module per resource. The
composition root (flashsale.wiring) hands it the way to open the worker's
services; the lifespan opens them at start-up and closes them at shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from litestar import Litestar

from flashsale.config import Settings
from flashsale.http.auth import configure_access
from flashsale.http.bounds import Bounds, Limits
from flashsale.http.claim_endpoint import ClaimEndpoint
from flashsale.http.claims import CLAIM_HANDLERS
from flashsale.http.context import put_budgets, put_services
from flashsale.http.coupons import CouponController
from flashsale.http.dashboard import DASHBOARD_HANDLERS
from flashsale.http.docs import docs_handlers, openapi_config
from flashsale.http.errors import EXCEPTION_HANDLERS
from flashsale.http.events import EVENT_HANDLERS
from flashsale.http.health import health
from flashsale.http.jwks import refreshing
from flashsale.http.limits import ClaimLimits, configure_proxies
from flashsale.http.metrics import metrics_endpoint
from flashsale.http.observability import RequestObserver
from flashsale.http.openapi import complete_schema
from flashsale.http.paths import RawUserPaths
from flashsale.http.raffles import RAFFLE_HANDLERS
from flashsale.http.requests import MAX_BODY_BYTES
from flashsale.http.spool import Spools
from flashsale.http.streams import StreamGate
from flashsale.http.users import USER_HANDLERS
from flashsale.http.webhooks import WebhookController
from flashsale.logs import configure_logging, protect_secrets
from flashsale.metrics import get_metrics
from flashsale.service.periodic import stop_task
from flashsale.service.services import Services

OpenServices = Callable[[], AbstractAsyncContextManager[Services]]
HELD_SAMPLE_SECONDS = 1.0


@asynccontextmanager
async def _nothing() -> AsyncIterator[None]:
    yield


def build_app(settings: Settings, open_services: OpenServices) -> Litestar:
    configure_logging(settings.log_level)
    protect_secrets(settings)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        access = configure_access(app.state, settings)
        spools = Spools(settings.spool_max_bytes)
        streams = StreamGate(settings.max_streams, settings.stream_idle_timeout)
        put_budgets(app.state, spools, streams)
        async with (
            refreshing(settings, access.users) if access.users else _nothing(),
            open_services() as services,
            _sampling_held(bounded, streams, spools),
        ):
            put_services(app.state, services)
            yield

    app = Litestar(
        route_handlers=[
            CouponController,
            *CLAIM_HANDLERS,
            *RAFFLE_HANDLERS,
            *USER_HANDLERS,
            WebhookController,
            *EVENT_HANDLERS,
            health,
            metrics_endpoint,
            *docs_handlers(),
            *DASHBOARD_HANDLERS,
        ],
        lifespan=[lifespan],
        logging_config=None,  # flashsale.logs owns logging (Litestar's would replace it)
        exception_handlers=EXCEPTION_HANDLERS,
        request_max_body_size=MAX_BODY_BYTES,
        openapi_config=openapi_config(),
        on_startup=[complete_schema],
    )
    # Outermost first: the observer sees every answer as the client gets it;
    # the bounds hold every request to its deadlines; claims are answered
    # next, everything else by Litestar (user-id paths routed on their raw,
    # still percent-encoded form).
    configure_proxies(app.state, settings)
    limits = ClaimLimits(settings) if settings.claim_rate > 0 else None
    claims = ClaimEndpoint(
        app, RawUserPaths(app.asgi_handler), ceiling=settings.bench_routes, limits=limits
    )
    bounded = Bounds(claims, limits_of(settings))
    app.asgi_handler = RequestObserver(bounded, access=settings.log_access)
    return app


@asynccontextmanager
async def _sampling_held(
    bounds: Bounds, streams: StreamGate, spools: Spools
) -> AsyncIterator[None]:
    """``flashsale_held`` each second, off the request path: what the worker
    holds for its requests (``flashsale bench --attack`` reads it back to
    zero once the attackers have gone)."""

    async def sample() -> None:
        metrics = get_metrics()
        while True:
            metrics.sample_held(bounds.in_flight, streams.open, spools.held)
            await asyncio.sleep(HELD_SAMPLE_SECONDS)

    sampler = asyncio.get_running_loop().create_task(sample())
    try:
        yield
    finally:
        await stop_task(sampler)


def limits_of(settings: Settings) -> Limits:
    return Limits(
        body_timeout=settings.body_timeout,
        send_timeout=settings.send_timeout,
        min_send_rate=settings.min_send_rate,
        response_timeout=settings.response_timeout,
        max_requests=settings.max_requests,
    )
