"""Claim batches with Idempotency-Keys, against the in-memory ClaimStore:
repeats of a key in one batch are answered from its first arrival without
reaching the store; a keyed user arriving again is decided in a later call."""

from __future__ import annotations

import asyncio

from flashsale.claims.batched import BatchedClaims
from flashsale.domain import ClaimDecision, ClaimOutcome, IdempotencyKey
from tests.support.fakes import Batch, FakeClaimStore

SCOPE = "POST /api/coupons/claim"


def key(name: str, fingerprint: bytes = b"same") -> IdempotencyKey:
    return IdempotencyKey(SCOPE, name, fingerprint)


async def queued_behind_one(
    store: FakeClaimStore, engine: BatchedClaims, *calls: tuple[str, IdempotencyKey | None]
) -> list[ClaimDecision]:
    """The calls queued while a first claim holds the coupon: one batch."""
    store.gate.clear()
    first = asyncio.create_task(engine.claim(coupon_name="C", user_id="first"))
    await asyncio.sleep(0)
    tasks = [
        asyncio.create_task(engine.claim(coupon_name="C", user_id=user, key=k)) for user, k in calls
    ]
    for _ in range(5):
        await asyncio.sleep(0)
    store.gate.set()
    await first
    return list(await asyncio.gather(*tasks))


async def test_repeats_of_a_key_in_one_batch_share_its_first_decision() -> None:
    store = FakeClaimStore()
    store.create("C", 10)
    engine = BatchedClaims(store, max_batch=100, max_queue=1000)
    decisions = await queued_behind_one(store, engine, *[("ann", key("k"))] * 5)
    assert [d.outcome for d in decisions] == [ClaimOutcome.CLAIMED] * 5
    assert [d.replayed for d in decisions] == [False, True, True, True, True]
    assert store.batches[1:] == [Batch("decide_batch", "C", ["ann"])]


async def test_a_repeat_of_a_key_with_another_request_is_refused() -> None:
    store = FakeClaimStore()
    store.create("C", 10)
    engine = BatchedClaims(store, max_batch=100, max_queue=1000)
    decisions = await queued_behind_one(
        store, engine, ("ann", key("k")), ("bob", key("k", b"other"))
    )
    assert [d.outcome for d in decisions] == [ClaimOutcome.CLAIMED, ClaimOutcome.KEY_REUSED]
    assert not decisions[1].replayed


async def test_a_keyed_user_arriving_again_is_decided_in_a_later_call() -> None:
    store = FakeClaimStore()
    store.create("C", 10)
    engine = BatchedClaims(store, max_batch=100, max_queue=1000)
    decisions = await queued_behind_one(
        store, engine, ("ann", key("k1")), ("bob", None), ("ann", key("k2")), ("ann", None)
    )
    outcomes = [d.outcome for d in decisions]
    assert (
        outcomes
        == [ClaimOutcome.CLAIMED, ClaimOutcome.CLAIMED] + [ClaimOutcome.ALREADY_CLAIMED] * 2
    )
    assert store.batches[1:] == [
        Batch("decide_batch", "C", ["ann", "bob"]),  # ann with k1
        Batch("decide_batch", "C", ["ann"]),  # with k2
        Batch("decide_batch", "C", ["ann"]),  # without a key: never beside a keyed ann
    ]


async def test_a_keyed_claim_skips_the_sold_out_lane() -> None:
    store = FakeClaimStore()
    store.create("C", 1)
    engine = BatchedClaims(store, max_batch=100, max_queue=1000)
    await engine.claim(coupon_name="C", user_id="ann")  # sold out now
    decision = await engine.claim(coupon_name="C", user_id="bob", key=key("k"))
    assert decision.outcome is ClaimOutcome.SOLD_OUT
    assert [b.call for b in store.batches] == ["decide_batch", "decide_batch"]
    assert store.keys == {(SCOPE, "k"): (b"same", ClaimOutcome.SOLD_OUT)}
