"""Integration level: the store and the claim engine on a real database."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from flashsale.claims.batched import BatchedClaims
from flashsale.config import Settings, load_settings
from flashsale.storage.connections import Connections
from flashsale.storage.events import EventStore
from flashsale.storage.pool import Pool, create_pool
from flashsale.storage.reads import CouponReadStore
from flashsale.storage.session_defaults import store_service_timeouts
from flashsale.storage.store import CouponStore
from tests.support.stores import StoreFactory


@pytest.fixture
async def make_store(database: str) -> AsyncIterator[StoreFactory]:
    """Stores with pools of their own, as separate server processes would have."""
    pools: list[Pool] = []

    async def make(**environment: str) -> CouponStore:
        settings: Settings = load_settings({"DATABASE_URL": database, **environment})
        # What `flashsale serve` does at start-up: the timeouts become the
        # role's defaults, which the pool's sessions then carry.
        await store_service_timeouts(database, settings)
        pool = await create_pool(settings)
        pools.append(pool)
        return CouponStore(Connections.configured(pool, settings))

    yield make
    for pool in pools:
        await pool.close()


@pytest.fixture
async def store(make_store: StoreFactory) -> CouponStore:
    return await make_store(DB_POOL_MIN="1")


@pytest.fixture
def engine(store: CouponStore) -> BatchedClaims:
    return BatchedClaims(store, max_batch=500, max_queue=10_000)


@pytest.fixture
async def read_store(make_store: StoreFactory, database: str) -> AsyncIterator[CouponReadStore]:
    """The read side's store on a pool of its own."""
    settings = load_settings({"DATABASE_URL": database, "DB_POOL_MIN": "1"})
    pool = await create_pool(settings)
    yield CouponReadStore(Connections.configured(pool, settings))
    await pool.close()


@pytest.fixture
async def event_store(database: str) -> AsyncIterator[EventStore]:
    """The events feed's store on a pool of its own."""
    settings = load_settings({"DATABASE_URL": database, "DB_POOL_MIN": "1"})
    pool = await create_pool(settings)
    yield EventStore(Connections.configured(pool, settings))
    await pool.close()
