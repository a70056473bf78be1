"""A coupon's streamed read (storage/reads.py): a coupon with more claimers
than one FETCH takes one of the read store's slots (half the pool) for as
long as its snapshot is read, so claims keep the other half; a coupon whose
claimers fit in one FETCH is read without a slot, so it never waits (nor is
refused) behind large reads."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from flashsale.config import load_settings
from flashsale.domain import ServiceUnavailable
from flashsale.metrics import get_metrics
from flashsale.service.ports import CouponSnapshot
from flashsale.storage.admin import seed_coupon
from flashsale.storage.connections import Connections
from flashsale.storage.pool import create_pool
from flashsale.storage.reads import CouponReadStore

BATCH = 5  # claimers per FETCH: LARGE needs four, SMALL one


@pytest.fixture
async def reads(database: str) -> AsyncIterator[CouponReadStore]:
    """Two slots (a pool of four); a slot is waited for 0.5 s, then 503."""
    environment = {"DATABASE_URL": database, "DB_POOL_MAX": "4", "DB_ACQUIRE_TIMEOUT": "0.5"}
    settings = load_settings(environment)
    pool = await create_pool(settings)
    await seed_coupon(database, "LARGE", 100, claims=4 * BATCH)
    await seed_coupon(database, "SMALL", 10, claims=3)
    yield CouponReadStore(Connections.configured(pool, settings), batch_rows=BATCH)
    await pool.close()


async def claimers(snapshot: CouponSnapshot | None) -> list[str]:
    assert snapshot is not None
    return [user async for batch in snapshot.user_id_batches() for user in batch]


async def test_a_small_coupon_is_read_while_every_large_read_slot_is_held(
    reads: CouponReadStore,
) -> None:
    held = [await reads.open_snapshot("LARGE") for _ in range(2)]  # both slots, unread
    try:
        refused = get_metrics().requests_cut.labels("reads_full")._value.get()
        with pytest.raises(ServiceUnavailable):  # a third large read finds none
            await reads.open_snapshot("LARGE")
        # Counted under its reason (flashsale_requests_cut_total, docs/operations.md).
        assert get_metrics().requests_cut.labels("reads_full")._value.get() == refused + 1
        small = await reads.open_snapshot("SMALL")
        assert small is not None
        assert (small.header.amount, small.header.remaining_amount) == (10, 7)
        assert sorted(await claimers(small)) == ["user-1", "user-2", "user-3"]
        # Each held large read is whole, from its own snapshot.
        for snapshot in held:
            assert len(await claimers(snapshot)) == 4 * BATCH
    finally:
        for snapshot in held:
            assert snapshot is not None
            await snapshot.close()
    # Their slots are back: a large read is let in again.
    assert len(await claimers(await reads.open_snapshot("LARGE"))) == 4 * BATCH


async def test_a_missing_coupon_is_none(reads: CouponReadStore) -> None:
    assert await reads.open_snapshot("NO_SUCH_COUPON") is None
