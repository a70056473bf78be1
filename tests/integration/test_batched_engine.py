"""The batched claim engine against a real database: lanes, the sold-out
hint, failures mid-batch and callers that leave."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest

from flashsale.claims.batched import BatchedClaims
from flashsale.domain import ClaimOutcome, ServiceUnavailable
from flashsale.service.ports import NewCoupon
from flashsale.storage.store import CouponStore
from tests.support.invariants import assert_invariants
from tests.support.locks import locked, wait_until_blocked
from tests.support.stores import StoreFactory, outcome_of
from tests.support.traffic import PROMPT

CLAIMED = ClaimOutcome.CLAIMED


async def claim_many(engine: BatchedClaims, coupon: str, users: list[str]) -> list[Any]:
    return await asyncio.gather(
        *(outcome_of(engine, coupon_name=coupon, user_id=user) for user in users),
        return_exceptions=True,
    )


@asynccontextmanager
async def coupon_locked(database: str, coupon: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    """The coupon's row lock held by another session (yielded) until the block ends."""
    lock_holder = await asyncpg.connect(database)
    try:
        async with locked(lock_holder, "SELECT 1 FROM coupons WHERE name = $1 FOR UPDATE", coupon):
            yield lock_holder
    finally:
        await lock_holder.close()


@asynccontextmanager
async def new_coupon_locked(
    store: CouponStore, database: str
) -> AsyncIterator[asyncpg.Connection[Any]]:
    """A new coupon C of 100 whose row lock another session holds (yielded)."""
    await store.create_coupon(NewCoupon(name="C", amount=100))
    async with coupon_locked(database, "C") as holder:
        yield holder


async def sold_out_to_a(engine: BatchedClaims, store: CouponStore) -> None:
    """Coupon C's one unit claimed by a: b is refused, sold out."""
    await store.create_coupon(NewCoupon(name="C", amount=1))
    await outcome_of(engine, coupon_name="C", user_id="a")
    assert await outcome_of(engine, coupon_name="C", user_id="b") is ClaimOutcome.SOLD_OUT


async def test_concurrent_claims_are_granted_in_arrival_order(
    engine: BatchedClaims, store: CouponStore, db: asyncpg.Connection[Any]
) -> None:
    await store.create_coupon(NewCoupon(name="C", amount=30))
    users = [f"u{i:03}" for i in range(100)]
    outcomes = await claim_many(engine, "C", users)
    assert outcomes == [CLAIMED] * 30 + [ClaimOutcome.SOLD_OUT] * 70
    rows = await db.fetch("SELECT user_id FROM claims ORDER BY id")
    assert [row["user_id"] for row in rows] == users[:30]


async def test_several_coupons_at_once_each_sell_exactly_their_stock(
    engine: BatchedClaims, store: CouponStore, db: asyncpg.Connection[Any]
) -> None:
    stocks = {"A": 1, "B": 10, "C": 100}
    for name, amount in stocks.items():
        await store.create_coupon(NewCoupon(name=name, amount=amount))
    calls = [(name, f"user{i}") for i in range(50) for name in stocks]
    outcomes = await asyncio.gather(
        *(outcome_of(engine, coupon_name=name, user_id=user) for name, user in calls)
    )
    for name, amount in stocks.items():
        granted = sum(
            1 for (n, _), o in zip(calls, outcomes, strict=True) if n == name and o is CLAIMED
        )
        assert granted == min(amount, 50)
    await assert_invariants(db)


async def test_a_database_error_mid_batch_fails_every_waiter_and_writes_nothing(
    make_store: StoreFactory, db: asyncpg.Connection[Any], database: str
) -> None:
    store = await make_store(DB_STATEMENT_TIMEOUT="0.3")
    engine = BatchedClaims(store, max_batch=500, max_queue=1000)
    async with new_coupon_locked(store, database):
        outcomes = await claim_many(engine, "C", [f"u{i}" for i in range(50)])
    assert all(isinstance(outcome, ServiceUnavailable) for outcome in outcomes)
    assert await db.fetchval("SELECT count(*) FROM claims") == 0
    assert await outcome_of(engine, coupon_name="C", user_id="after") is CLAIMED
    await assert_invariants(db)


async def test_a_connection_killed_mid_batch_fails_its_waiters_only_with_503(
    engine: BatchedClaims, store: CouponStore, db: asyncpg.Connection[Any], database: str
) -> None:
    async with new_coupon_locked(store, database) as holder:
        pending = asyncio.ensure_future(claim_many(engine, "C", [f"u{i}" for i in range(20)]))
        await wait_until_blocked(holder)
        await db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'flashsale' AND wait_event_type = 'Lock'"
        )
        outcomes = await pending
    assert not any(outcome is CLAIMED for outcome in outcomes[:1])
    assert all(o is CLAIMED or isinstance(o, ServiceUnavailable) for o in outcomes)
    committed = await db.fetchval("SELECT count(*) FROM claims")
    assert committed == sum(1 for o in outcomes if o is CLAIMED)
    await assert_invariants(db)


async def test_what_committed_stands_when_callers_leave(
    engine: BatchedClaims, store: CouponStore, db: asyncpg.Connection[Any], database: str
) -> None:
    async with new_coupon_locked(store, database) as holder:
        in_flight = asyncio.create_task(outcome_of(engine, coupon_name="C", user_id="in-flight"))
        await wait_until_blocked(holder)  # its batch is now waiting for the lock
        queued = [
            asyncio.create_task(outcome_of(engine, coupon_name="C", user_id=f"queued{i}"))
            for i in range(3)
        ]
        await asyncio.sleep(0.05)
        in_flight.cancel()
        queued[0].cancel()
    assert [await task for task in queued[1:]] == [CLAIMED, CLAIMED]
    rows = await db.fetch("SELECT user_id FROM claims ORDER BY id")
    assert [row["user_id"] for row in rows] == ["in-flight", "queued1", "queued2"]
    await assert_invariants(db)


async def test_sold_out_answers_do_not_wait_for_the_coupon_lock(
    engine: BatchedClaims, store: CouponStore, database: str
) -> None:
    await store.create_coupon(NewCoupon(name="C", amount=1))
    assert await outcome_of(engine, coupon_name="C", user_id="winner") is CLAIMED
    assert (
        await outcome_of(engine, coupon_name="C", user_id="late") is ClaimOutcome.SOLD_OUT
    )  # the hint is set now
    # Not behind the lock: an answer that waited for it would never come.
    async with coupon_locked(database, "C"), asyncio.timeout(PROMPT):
        outcomes = await claim_many(engine, "C", ["winner", "x", "y"])
    assert outcomes == [ClaimOutcome.ALREADY_CLAIMED, ClaimOutcome.SOLD_OUT, ClaimOutcome.SOLD_OUT]


async def test_a_coupon_recreated_under_the_same_name_is_claimable_again(
    engine: BatchedClaims, store: CouponStore, db: asyncpg.Connection[Any]
) -> None:
    await sold_out_to_a(engine, store)
    await db.execute("DELETE FROM coupons WHERE name = 'C'")
    assert await outcome_of(engine, coupon_name="C", user_id="b") is ClaimOutcome.NOT_FOUND
    await store.create_coupon(NewCoupon(name="C", amount=5))
    assert await outcome_of(engine, coupon_name="C", user_id="a") is CLAIMED
    await assert_invariants(db)


async def test_stock_returned_by_an_operator_reopens_a_sold_out_coupon(
    engine: BatchedClaims, store: CouponStore, db: asyncpg.Connection[Any]
) -> None:
    await sold_out_to_a(engine, store)
    await db.execute("DELETE FROM claims WHERE user_id = 'a'")
    assert await outcome_of(engine, coupon_name="C", user_id="b") is CLAIMED
    assert await outcome_of(engine, coupon_name="C", user_id="c") is ClaimOutcome.SOLD_OUT
    await assert_invariants(db)


async def test_a_coupon_queue_past_its_cap_is_refused_with_503(
    store: CouponStore, database: str
) -> None:
    engine = BatchedClaims(store, max_batch=10, max_queue=5)
    async with new_coupon_locked(store, database) as holder:
        pending = asyncio.ensure_future(claim_many(engine, "C", [f"u{i}" for i in range(20)]))
        await wait_until_blocked(holder)  # the first batch is at the lock, the rest queued
    outcomes = await pending
    refused = [o for o in outcomes if isinstance(o, ServiceUnavailable)]
    # All twenty arrive before the first batch leaves: five wait, the rest are refused.
    assert len(refused) == 15
    assert outcomes.count(CLAIMED) == 5


@pytest.mark.parametrize("workers", [3])
async def test_engines_in_separate_processes_share_one_stock_exactly(
    make_store: StoreFactory, store: CouponStore, db: asyncpg.Connection[Any], workers: int
) -> None:
    engines = [
        BatchedClaims(await make_store(), max_batch=50, max_queue=10_000) for _ in range(workers)
    ]
    await store.create_coupon(NewCoupon(name="C", amount=250))
    users = [f"u{i}" for i in range(1000)]
    outcomes = await asyncio.gather(
        *(
            outcome_of(engines[i % workers], coupon_name="C", user_id=user)
            for i, user in enumerate(users)
        )
    )
    assert outcomes.count(CLAIMED) == 250
    assert await db.fetchval("SELECT count(*) FROM claims") == 250
    await assert_invariants(db)
