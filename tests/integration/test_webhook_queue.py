"""The webhooks' delivery state on a real database: concurrent deliverers
(each on a pool of its own, as separate instances) never lease one stream
twice, a lease that ran out and was taken over records nothing, an endpoint
hears only what happened after it registered, and no transaction is open
while a POST is in flight."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from flashsale.config import load_settings
from flashsale.service.ports import NewCoupon
from flashsale.service.webhook_ports import Delivery
from flashsale.storage.connections import Connections
from flashsale.storage.pool import Pool, create_pool
from flashsale.storage.store import CouponStore
from flashsale.storage.webhooks import WebhookStore

SECRET = "whsec_integration-0123456789"
WebhookStoreFactory = Callable[[], Awaitable[tuple[WebhookStore, CouponStore]]]


@pytest.fixture
async def make_stores(database: str) -> AsyncIterator[WebhookStoreFactory]:
    pools: list[Pool] = []

    async def make() -> tuple[WebhookStore, CouponStore]:
        settings = load_settings({"DATABASE_URL": database, "DB_POOL_MIN": "1"})
        pool = await create_pool(settings)
        pools.append(pool)
        connections = Connections.configured(pool, settings)
        return WebhookStore(connections), CouponStore(connections)

    yield make
    for pool in pools:
        await pool.close()


def seq(delivery: Delivery) -> int:
    """The seq of a leased stream's next event: what its delivery records."""
    assert delivery.event is not None
    return delivery.event.seq


async def lease_all(store: WebhookStore, limit: int = 100) -> list[Delivery]:
    await store.queue_events(page=1000)
    return await store.lease(limit=limit, lease_seconds=30)


async def queued(store: WebhookStore, db: asyncpg.Connection[Any], streams: int) -> None:
    """Pumps until ``streams`` streams have work. The pump reads only below
    the cluster's xmin horizon: a transaction open anywhere on the server
    (another test's, another database's) delays it."""
    for _ in range(200):
        await store.queue_events(page=1000)
        if await db.fetchval(QUEUED) >= streams:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {streams} streams queued")


async def claims_queued(
    make_stores: WebhookStoreFactory, db: asyncpg.Connection[Any], name: str, users: list[str]
) -> WebhookStore:
    """An endpoint for claims, then ``users`` claiming a new coupon: one stream queued."""
    hooks, coupons = await make_stores()
    await hooks.register_webhook(url="http://127.0.0.1:9/h", events=["claimed"], secret=SECRET)
    await coupons.create_coupon(NewCoupon(name=name, amount=5))
    await coupons.decide_batch(name, users)
    await queued(hooks, db, 1)
    return hooks


QUEUED = "SELECT count(*) FROM webhook_streams WHERE queued_seq > delivered_seq"


async def test_concurrent_deliverers_never_lease_one_stream_twice(
    make_stores: WebhookStoreFactory, db: asyncpg.Connection[Any]
) -> None:
    stores = [await make_stores() for _ in range(4)]
    hooks, coupons = stores[0]
    await hooks.register_webhook(url="http://127.0.0.1:9/h", events=["claimed"], secret=SECRET)
    for i in range(40):
        await coupons.create_coupon(NewCoupon(name=f"Q{i}", amount=5))
        await coupons.decide_batch(f"Q{i}", ["ann", "bob"])
    await queued(hooks, db, 40)
    rounds = await asyncio.gather(*(store.lease(limit=15, lease_seconds=30) for store, _ in stores))
    leased = [(d.coupon_id, d.lease) for deliveries in rounds for d in deliveries]
    assert len(leased) == 40  # every stream once
    assert len({coupon for coupon, _ in leased}) == 40
    assert all(d.event is not None and d.event.seq == 2 for r in rounds for d in r)  # claimed
    assert await lease_all(stores[0][0]) == []  # all still leased


async def test_a_lease_taken_over_records_nothing_and_the_next_event_follows(
    make_stores: WebhookStoreFactory, db: asyncpg.Connection[Any]
) -> None:
    hooks = await claims_queued(make_stores, db, "TAKEN", ["ann", "bob"])
    [first] = await lease_all(hooks)
    await db.execute("UPDATE webhook_streams SET leased_until = now() - interval '1 s'")
    [second] = await lease_all(hooks)  # the first deliverer looked dead
    assert second.event == first.event
    assert second.lease == first.lease + 1
    # too late: nothing recorded
    assert await hooks.delivered(first, through=seq(first), renew_seconds=30) is None
    assert await hooks.failed(first, error="HTTP 500", retry_in=1) is None
    following = await hooks.delivered(second, through=seq(second), renew_seconds=30)
    assert following is not None
    assert following.event is not None
    assert (following.event.user_id, following.lease) == ("bob", second.lease)
    caught_up = await hooks.delivered(following, through=seq(following), renew_seconds=30)
    assert caught_up is None
    assert await db.fetchval("SELECT delivered_seq FROM webhook_streams") == 3
    assert await db.fetchval("SELECT leased_until FROM webhook_streams") is None


async def test_an_endpoint_hears_what_happens_after_it_registered(
    make_stores: WebhookStoreFactory, db: asyncpg.Connection[Any]
) -> None:
    hooks, coupons = await make_stores()
    await coupons.create_coupon(NewCoupon(name="BEFORE", amount=5))
    await coupons.decide_batch("BEFORE", ["early"])
    await hooks.register_webhook(url="http://127.0.0.1:9/h", events=["claimed"], secret=SECRET)
    await coupons.decide_batch("BEFORE", ["late"])
    await coupons.create_coupon(NewCoupon(name="AFTER", amount=5))
    await coupons.decide_batch("AFTER", ["new"])
    await queued(hooks, db, 2)
    leased = await lease_all(hooks)
    assert sorted((d.event.coupon_name, d.event.user_id) for d in leased if d.event) == [
        ("AFTER", "new"), ("BEFORE", "late")
    ]  # fmt: skip


async def test_a_failed_attempt_waits_its_backoff_and_counts_in_a_row(
    make_stores: WebhookStoreFactory, db: asyncpg.Connection[Any]
) -> None:
    hooks = await claims_queued(make_stores, db, "RETRY", ["ann"])
    [delivery] = await lease_all(hooks)
    failure = await hooks.failed(delivery, error="HTTP 502", retry_in=3600)
    assert failure is not None
    assert failure.attempts == 1
    assert await lease_all(hooks) == []  # not due for an hour
    await db.execute("UPDATE webhook_streams SET next_attempt_at = now()")
    [again] = await lease_all(hooks)
    assert again.attempts == 1
    assert again.event == delivery.event
    failure = await hooks.failed(again, error="HTTP 503", retry_in=0)
    assert failure is not None
    assert failure.attempts == 2
    [webhook] = await hooks.list_webhooks(after=0, limit=100)
    assert (webhook.failures, webhook.last_error, webhook.pending) == (2, "HTTP 503", 1)
    await hooks.disable(webhook.id, "given up")
    assert await lease_all(hooks) == []  # a disabled endpoint gets no more leases
