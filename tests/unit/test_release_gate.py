"""Releases gather at their coupon's gate (claims/gate.py) before the claim
lane, so that one batch decides several: what waits, for how long, and
what goes on regardless (a full gate, a cancelled waiter, shutdown)."""

from __future__ import annotations

import asyncio

from flashsale.claims.batched import BatchedClaims
from flashsale.domain import ReleaseOutcome
from tests.support.fakes import FakeClaimStore

RELEASED = ReleaseOutcome.RELEASED


async def holders(store: FakeClaimStore, engine: BatchedClaims, users: list[str]) -> None:
    store.create("C", 100)
    for user in users:
        await engine.claim(coupon_name="C", user_id=user)
    store.batches.clear()


def release(engine: BatchedClaims, user: str) -> asyncio.Task[ReleaseOutcome]:
    async def outcome() -> ReleaseOutcome:
        return (await engine.release(coupon_name="C", user_id=user)).outcome

    return asyncio.create_task(outcome())


async def test_releases_arriving_within_the_window_share_one_batch() -> None:
    store = FakeClaimStore()
    engine = BatchedClaims(store, max_batch=100, max_queue=100, release_gather=(0.2, 64))
    await holders(store, engine, ["a", "b", "c"])
    tasks = []
    for user in ["a", "b", "c"]:
        tasks.append(release(engine, user))
        await asyncio.sleep(0.02)
    assert not any(task.done() for task in tasks)  # still gathering
    assert await asyncio.gather(*tasks) == [RELEASED] * 3
    assert [sorted(batch.users) for batch in store.batches] == [["a", "b", "c"]]


async def test_a_full_gate_opens_at_once() -> None:
    store = FakeClaimStore()
    engine = BatchedClaims(store, max_batch=100, max_queue=100, release_gather=(60.0, 2))
    await holders(store, engine, ["a", "b"])
    both = asyncio.gather(release(engine, "a"), release(engine, "b"))
    assert list(await asyncio.wait_for(both, 1.0)) == [RELEASED, RELEASED]


async def test_a_cancelled_release_is_not_made_and_the_others_are() -> None:
    store = FakeClaimStore()
    engine = BatchedClaims(store, max_batch=100, max_queue=100, release_gather=(0.1, 64))
    await holders(store, engine, ["a", "b"])
    leaving, staying = release(engine, "a"), release(engine, "b")
    await asyncio.sleep(0.01)
    leaving.cancel()
    assert await staying is RELEASED
    assert [batch.users for batch in store.batches] == [["b"]]
    assert store.coupons["C"].remaining == 99  # a still holds its unit


async def test_closing_the_engine_lets_gathered_releases_through() -> None:
    store = FakeClaimStore()
    engine = BatchedClaims(store, max_batch=100, max_queue=100, release_gather=(60.0, 64))
    await holders(store, engine, ["a"])
    pending = release(engine, "a")
    await asyncio.sleep(0.01)
    await asyncio.wait_for(engine.close(), 1.0)
    assert await pending is RELEASED
