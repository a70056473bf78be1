"""Claim lanes across coupons (claims/lanes.py) in the batched engine,
against the in-memory ClaimStore: what goes together, one coupon's share of
a batch, and what a part's failure reaches (on PostgreSQL:
tests/integration/test_batched_engine.py)."""

from __future__ import annotations

import asyncio

from flashsale.claims.batched import BatchedClaims
from flashsale.domain import (
    Caller,
    CallerKind,
    ClaimOutcome,
    IdempotencyKey,
    ReleaseOutcome,
    ServiceUnavailable,
)
from tests.support.fakes import Batch, FakeClaimStore
from tests.support.stores import outcome_of
from tests.unit.test_batched_claims import batch_held, claim_later, settle

CLAIMED = ClaimOutcome.CLAIMED


def lanes_engine(
    store: FakeClaimStore, *, lanes: int = 1, max_batch: int = 100, share: int = 100
) -> BatchedClaims:
    return BatchedClaims(
        store, max_batch=max_batch, max_queue=1000, lanes=lanes, coupon_share=share
    )


async def held_first_batch(
    store: FakeClaimStore, engine: BatchedClaims
) -> asyncio.Task[ClaimOutcome]:
    """The lane's first batch (a claim on FIRST) waits at the store."""
    store.create("FIRST", 10)
    return await batch_held(store, engine, "FIRST", "first")


async def x_on_a_and_y_on(
    engine: BatchedClaims, other: str
) -> tuple[ClaimOutcome | BaseException, ClaimOutcome | BaseException]:
    """x's claim on A and y's on ``other``, sent together: outcomes or errors."""
    return await asyncio.gather(
        outcome_of(engine, coupon_name="A", user_id="x"),
        outcome_of(engine, coupon_name=other, user_id="y"),
        return_exceptions=True,
    )


async def test_a_coupon_takes_at_most_its_share_while_others_wait() -> None:
    store = FakeClaimStore()
    engine = lanes_engine(store, max_batch=4, share=2)
    first = await held_first_batch(store, engine)
    store.create("HOT", 100)
    store.create("B", 10)
    hot = [claim_later(engine, "HOT", f"h{i}") for i in range(5)]
    other = [claim_later(engine, "B", f"b{i}") for i in range(2)]
    await settle()
    store.gate.set()
    await first
    assert [await task for task in hot + other] == [CLAIMED] * 7
    assert store.batches[1:] == [
        Batch("decide_coupons", "HOT+B", ["h0", "h1", "b0", "b1"]),
        Batch("decide_batch", "HOT", ["h2", "h3", "h4"]),  # alone, it fills the batch
    ]


async def test_a_hot_coupon_alone_fills_its_batch_past_its_share() -> None:
    store = FakeClaimStore()
    engine = lanes_engine(store, max_batch=4, share=1)
    first = await held_first_batch(store, engine)
    store.create("HOT", 100)
    hot = [claim_later(engine, "HOT", f"h{i}") for i in range(4)]
    await settle()
    store.gate.set()
    await first
    assert [await task for task in hot] == [CLAIMED] * 4
    assert store.batches[1:] == [Batch("decide_batch", "HOT", ["h0", "h1", "h2", "h3"])]


async def test_a_failed_part_fails_only_its_own_claims() -> None:
    store = FakeClaimStore()
    store.create("A", 5)
    store.create("BROKEN", 5)
    store.broken["BROKEN"] = error = RuntimeError("a constraint of BROKEN")
    engine = lanes_engine(store)
    outcomes = await x_on_a_and_y_on(engine, "BROKEN")
    assert list(outcomes) == [CLAIMED, error]
    assert store.coupons["A"].holders == ["x"]
    assert store.coupons["BROKEN"].holders == []


async def test_a_whole_batch_failure_reaches_every_coupon_in_it() -> None:
    store = FakeClaimStore()
    store.create("A", 5)
    store.create("B", 5)
    store.failure = error = ServiceUnavailable("the database is unreachable, retry shortly")
    engine = lanes_engine(store)
    outcomes = await x_on_a_and_y_on(engine, "B")
    assert list(outcomes) == [error, error]


async def test_a_keyed_part_is_decided_with_the_others() -> None:
    store = FakeClaimStore()
    store.create("A", 5)
    store.create("B", 5)
    store.create("K", 5)
    engine = lanes_engine(store)
    key = IdempotencyKey("claim", "k1", b"print")
    keyed = engine.claim(coupon_name="K", user_id="z", key=key)
    outcomes = await asyncio.gather(
        outcome_of(engine, coupon_name="A", user_id="x"),
        outcome_of(engine, coupon_name="B", user_id="y"),
        keyed,
    )
    assert list(outcomes[:2]) == [CLAIMED, CLAIMED]
    assert outcomes[2].outcome is CLAIMED
    assert [(batch.call, batch.coupon) for batch in store.batches] == [("decide_coupons", "A+B+K")]


async def test_a_keyed_user_arriving_twice_is_decided_beside_the_others() -> None:
    store = FakeClaimStore()
    store.create("A", 5)
    store.create("K", 5)
    engine = lanes_engine(store)
    first, second = IdempotencyKey("claim", "k1", b"1"), IdempotencyKey("claim", "k2", b"2")
    outcomes = await asyncio.gather(
        outcome_of(engine, coupon_name="A", user_id="x"),
        engine.claim(coupon_name="K", user_id="z", key=first),
        engine.claim(coupon_name="K", user_id="z", key=second),
    )
    assert outcomes[0] is CLAIMED
    assert [outcomes[1].outcome, outcomes[2].outcome] == [CLAIMED, ClaimOutcome.ALREADY_CLAIMED]
    assert sorted((batch.call, batch.coupon) for batch in store.batches) == [
        ("decide_batch", "K"),
        ("decide_batch", "K"),
        ("decide_coupons", "A"),
    ]


async def test_coupons_of_different_lanes_go_in_different_batches() -> None:
    store = FakeClaimStore()
    engine = lanes_engine(store, lanes=2)
    names = [f"C{i}" for i in range(20)]
    for name in names:
        store.create(name, 5)
    await asyncio.gather(*(outcome_of(engine, coupon_name=n, user_id="u") for n in names))
    assert len(store.batches) == 2
    lanes = [set(batch.coupon.split("+")) for batch in store.batches]
    assert lanes[0] | lanes[1] == set(names)
    assert not lanes[0] & lanes[1]


async def test_each_coupons_part_carries_its_releases_actors() -> None:
    store = FakeClaimStore()
    engine = lanes_engine(store)
    operator, shop = Caller(CallerKind.OPERATOR, name="ops"), Caller(CallerKind.BACKEND, name="s")
    store.create("A", 5)
    store.create("B", 5)
    for coupon in ("A", "B"):
        assert await outcome_of(engine, coupon_name=coupon, user_id="u") is CLAIMED
    first = await batch_held(store, engine, "A", "first")  # in flight: the releases queue behind it
    releases = [
        asyncio.create_task(engine.release(coupon_name="A", user_id="u", actor=operator)),
        asyncio.create_task(engine.release(coupon_name="B", user_id="u", actor=shop)),
    ]
    await settle()
    store.gate.set()
    await first
    assert [(await task).outcome for task in releases] == [ReleaseOutcome.RELEASED] * 2
    assert [batch.call for batch in store.batches][-1] == "decide_coupons"  # one call
    assert store.released_by == [("A", "u", operator), ("B", "u", shop)]
