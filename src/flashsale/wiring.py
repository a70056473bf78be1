"""The composition root: the one place that builds the objects a worker runs
on (pool, stores, claim engine, use cases) and closes them, in reverse order.
Granian serves ``flashsale.wiring:create_app`` as its factory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from functools import partial

import msgspec
from litestar import Litestar

from flashsale.claims.counted import CountedClaims
from flashsale.claims.engine import create_claim_engine
from flashsale.config import ClaimAuth, Settings, WebhookDelivery, load_settings
from flashsale.delivery.addresses import AddressPolicy
from flashsale.delivery.destinations import Destinations
from flashsale.delivery.sender import HttpSender
from flashsale.http.app import build_app
from flashsale.http.events import event_body
from flashsale.logs import get_logger
from flashsale.metrics import Metrics, forget_this_process, get_metrics
from flashsale.service.coupons import CouponService
from flashsale.service.dashboard import DashboardFeed
from flashsale.service.delivery import Batching, WebhookDeliverer
from flashsale.service.draws import Drawer
from flashsale.service.event_feed import EventFeed
from flashsale.service.events import EventReads
from flashsale.service.expiry import HoldExpirer
from flashsale.service.key_purge import KeyPurge
from flashsale.service.key_quota import KeyQuota
from flashsale.service.ports import Event
from flashsale.service.reads import CouponReads
from flashsale.service.services import Services
from flashsale.service.webhook_watch import WebhookWatch
from flashsale.service.webhooks import RetryPolicy, WebhookService
from flashsale.storage.connections import Connections
from flashsale.storage.events import EventStore
from flashsale.storage.pool import Pool, create_pool
from flashsale.storage.reads import CouponReadStore
from flashsale.storage.store import CouponStore
from flashsale.storage.webhooks import WebhookStore

POOL_SAMPLE_SECONDS = 1.0

log = get_logger("flashsale.wiring")


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or load_settings()
    return build_app(settings, partial(open_services, settings))


@asynccontextmanager
async def open_services(settings: Settings) -> AsyncIterator[Services]:
    """A worker's services, from its pool up; closed in reverse order (claims
    already accepted finish before the pool closes)."""
    metrics = get_metrics()
    pool = await create_pool(settings)
    connections = Connections.configured(pool, settings)
    store = CouponStore(connections)
    webhooks = WebhookStore(connections)
    claims = CountedClaims(
        create_claim_engine(settings, store, metrics.observe_batch, metrics.observe_lane_batch),
        metrics,
    )
    services = _services(settings, connections, store, claims, webhooks)
    background = _Background.started(settings, pool, store, webhooks, metrics)
    deliveries = _Deliveries.started(
        settings, webhooks, metrics, claims.busy, deliver=_delivers_in_workers(settings)
    )
    log.info("worker ready", strategy=settings.claim_strategy)
    try:
        yield services
    finally:
        await deliveries.close()
        await background.close()
        await services.dashboard.close()
        await services.event_feed.close()
        await services.coupons.close()  # claims already accepted finish first
        await connections.wait_for_writes()  # and every write sent, timed out or not
        await pool.close()
        forget_this_process()  # this worker's metric files (multiprocess mode)


def _services(
    settings: Settings,
    connections: Connections,
    store: CouponStore,
    claims: CountedClaims,
    webhooks: WebhookStore,
) -> Services:
    """The use cases the HTTP layer calls, on the worker's stores."""
    reads = CouponReadStore(connections)
    event_store = EventStore(connections)
    timeout = settings.request_timeout
    return Services(
        coupons=CouponService(
            store,
            claims,
            request_timeout=timeout,
            on_event=get_metrics().count_claim_event,
            identified=settings.claim_auth is not ClaimAuth.OPEN,
        ),
        reads=CouponReads(reads, request_timeout=timeout),
        dashboard=DashboardFeed(reads),
        events=EventReads(event_store, request_timeout=timeout),
        event_feed=EventFeed(event_store),
        webhooks=WebhookService(webhooks, destinations(settings), request_timeout=timeout),
        key_quota=KeyQuota(
            settings.idempotency_keys_per_identity,
            settings.idempotency_keys_per_credential,
            window=settings.idempotency_ttl,
        ),
    )


@dataclass(frozen=True, slots=True)
class _Background:
    """The worker's own tasks, which no request waits for."""

    purge: KeyPurge
    expirer: HoldExpirer
    sampler: asyncio.Task[None]
    drawer: Drawer

    @classmethod
    def started(
        cls,
        settings: Settings,
        pool: Pool,
        store: CouponStore,
        webhooks: WebhookStore,
        metrics: Metrics,
    ) -> _Background:
        sampler = asyncio.get_running_loop().create_task(_sample_pool(pool, metrics))
        # Holds expire with no request needed: one sweeper per worker (exactly once in SQL).
        expirer = HoldExpirer(store, on_expired=partial(metrics.count_claim_event, "expired"))
        expirer.start()
        # Idempotency keys past IDEMPOTENCY_TTL go in the background (SKIP LOCKED batches).
        purge = KeyPurge(store, ttl=settings.idempotency_ttl)
        purge.start()
        # Raffles draw at draw_at with no request needed (exactly once in SQL).
        drawer = Drawer(store)
        drawer.start()
        return cls(purge, expirer, sampler, drawer)

    async def close(self) -> None:
        await self.purge.close()
        await self.expirer.close()
        await self.drawer.close()
        self.sampler.cancel()
        with suppress(asyncio.CancelledError):
            await self.sampler


@dataclass(frozen=True, slots=True)
class _Deliveries:
    """Webhook deliveries (none where a separate process makes them) and the
    watch of each endpoint's backlog and lag."""

    deliverer: WebhookDeliverer | None
    watch: WebhookWatch

    @classmethod
    def started(
        cls,
        settings: Settings,
        webhooks: WebhookStore,
        metrics: Metrics,
        busy: Callable[[], bool],
        *,
        deliver: bool,
    ) -> _Deliveries:
        watch = WebhookWatch(
            webhooks, backlog_max=settings.webhook_backlog_max, on_sample=metrics.sample_webhooks
        )
        watch.start()
        # Its own task: a claim never waits for it, and it yields to claims (busy).
        deliverer = _deliverer(settings, webhooks, busy) if deliver else None
        if deliverer is not None:
            deliverer.start()
        return cls(deliverer, watch)

    async def close(self) -> None:
        if self.deliverer is not None:
            await self.deliverer.close()
        await self.watch.close()


def _delivers_in_workers(settings: Settings) -> bool:
    return settings.webhook_delivery is WebhookDelivery.WORKERS


def _no_claims() -> bool:
    """A delivery process serves no claims: nothing to yield to."""
    return False


async def run_deliveries(settings: Settings, stop: asyncio.Event) -> None:
    """``flashsale deliver``: a pool and the deliveries, until ``stop`` is set."""
    pool = await create_pool(settings)
    webhooks = WebhookStore(Connections.configured(pool, settings))
    deliveries = _Deliveries.started(settings, webhooks, get_metrics(), _no_claims, deliver=True)
    log.info("delivering webhooks", concurrency=settings.webhook_concurrency)
    try:
        await stop.wait()
    finally:
        await deliveries.close()
        await pool.close()


def _deliverer(
    settings: Settings, webhooks: WebhookStore, busy: Callable[[], bool]
) -> WebhookDeliverer:
    """Webhook deliveries, one task per worker; the body of each is the event
    exactly as GET /api/events shows it (the HTTP layer's struct)."""
    encoder = msgspec.json.Encoder()

    def encode(event: Event) -> bytes:
        return encoder.encode(event_body(event))

    sender = HttpSender(
        destinations(settings),
        timeout=settings.webhook_timeout,
        connect_timeout=settings.webhook_connect_timeout,
        retry_after_max=settings.webhook_retry_after_max,
    )
    return WebhookDeliverer(
        webhooks,
        sender,
        RetryPolicy.configured(settings),
        encode,
        timeout=settings.webhook_timeout,
        concurrency=settings.webhook_concurrency,
        busy=busy,
        busy_pause=settings.webhook_busy_pause,
        batch=_batching(settings),
    )


def _batching(settings: Settings) -> Batching | None:
    """WEBHOOK_BATCH_MAX above 1 turns batches on (every endpoint's)."""
    if settings.webhook_batch_max == 1:
        return None
    return Batching(settings.webhook_batch_max, settings.webhook_batch_bytes)


def destinations(settings: Settings) -> Destinations:
    """Where webhooks may go: global addresses and WEBHOOK_ALLOW_NETWORKS."""
    policy = AddressPolicy.configured(settings.webhook_allow_networks)
    return Destinations(policy, timeout=settings.webhook_connect_timeout)


async def _sample_pool(pool: Pool, metrics: Metrics) -> None:
    """Pool use each second (each worker its own pool, summed at scrape time)."""
    while True:
        metrics.sample_pool(pool.get_size(), pool.get_idle_size(), pool.get_max_size())
        await asyncio.sleep(POOL_SAMPLE_SECONDS)
