"""Property: whatever the interleaving of claims across several processes'
engines, no coupon is oversold, no user holds a coupon twice, every claim
answered CLAIMED is in the database and every SOLD_OUT user is not."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from typing import Any

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flashsale.claims.batched import BatchedClaims
from flashsale.domain import ClaimOutcome
from flashsale.service.ports import NewCoupon
from flashsale.storage.store import CouponStore
from tests.support.invariants import assert_invariants
from tests.support.stores import StoreFactory, outcome_of

ENGINES = 3
claim_calls = st.lists(
    st.tuples(
        st.integers(0, ENGINES - 1),  # which process
        st.integers(0, 2),  # which coupon
        st.integers(0, 11),  # which user
        st.sampled_from([0, 0, 0, 0.001, 0.003]),  # when it arrives
    ),
    min_size=1,
    max_size=60,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(stocks=st.lists(st.integers(1, 8), min_size=3, max_size=3), calls=claim_calls)
async def test_claims_across_processes_keep_every_invariant(
    make_store: StoreFactory,
    store: CouponStore,
    db: asyncpg.Connection[Any],
    stocks: list[int],
    calls: list[tuple[int, int, int, float]],
) -> None:
    engines = await _engines(make_store)
    prefix = uuid.uuid4().hex[:8]
    coupons = [f"{prefix}-{i}" for i in range(3)]
    for name, amount in zip(coupons, stocks, strict=True):
        await store.create_coupon(NewCoupon(name=name, amount=amount))

    async def call(engine: int, coupon: int, user: int, delay: float) -> ClaimOutcome:
        await asyncio.sleep(delay)
        return await outcome_of(engines[engine], coupon_name=coupons[coupon], user_id=f"user{user}")

    outcomes = await asyncio.gather(*(call(*c) for c in calls))
    answered: dict[str, dict[str, set[ClaimOutcome]]] = defaultdict(lambda: defaultdict(set))
    for (_, coupon, user, _), outcome in zip(calls, outcomes, strict=True):
        answered[coupons[coupon]][f"user{user}"].add(outcome)
    for name, amount in zip(coupons, stocks, strict=True):
        rows = await db.fetch("SELECT user_id FROM claims WHERE coupon_name = $1", name)
        holders = {row["user_id"] for row in rows}
        tried = answered[name]
        claimed = [u for u, seen in tried.items() if ClaimOutcome.CLAIMED in seen]
        assert set(claimed) == holders
        assert len(holders) == min(amount, len(tried))
        for user_id, seen in tried.items():
            assert ClaimOutcome.NOT_FOUND not in seen
            # Stock never comes back here, and holders always hear
            # already_claimed: a sold-out answer means the user holds nothing.
            if ClaimOutcome.SOLD_OUT in seen:
                assert user_id not in holders
            if ClaimOutcome.ALREADY_CLAIMED in seen:
                assert user_id in holders
    await assert_invariants(db)


_ENGINES_BY_FACTORY: dict[int, list[BatchedClaims]] = {}


async def _engines(make_store: StoreFactory) -> list[BatchedClaims]:
    """One set of engines per test run (hypothesis calls the body many times)."""
    key = id(make_store)
    if key not in _ENGINES_BY_FACTORY:
        _ENGINES_BY_FACTORY.clear()
        _ENGINES_BY_FACTORY[key] = [
            BatchedClaims(await make_store(DB_POOL_MIN="1"), max_batch=8, max_queue=1000)
            for _ in range(ENGINES)
        ]
    return _ENGINES_BY_FACTORY[key]
