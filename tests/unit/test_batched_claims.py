"""The batched engine on its own, against an in-memory ClaimStore: which
claims go together to the store, through which call, and what each caller
hears back (the same engine on PostgreSQL: tests/integration/test_batched_engine.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from flashsale.claims.batched import BatchedClaims
from flashsale.domain import Caller, CallerKind, ClaimOutcome, ReleaseOutcome, ServiceUnavailable
from tests.support.fakes import Batch, FakeClaimStore
from tests.support.stores import outcome_of

CLAIMED = ClaimOutcome.CLAIMED
ALREADY = ClaimOutcome.ALREADY_CLAIMED
SOLD_OUT = ClaimOutcome.SOLD_OUT
NOT_FOUND = ClaimOutcome.NOT_FOUND
RELEASED = ReleaseOutcome.RELEASED


@pytest.fixture
def store() -> FakeClaimStore:
    return FakeClaimStore()


def engine_on(
    store: FakeClaimStore, *, max_batch: int = 100, max_queue: int = 1000
) -> BatchedClaims:
    return BatchedClaims(store, max_batch=max_batch, max_queue=max_queue)


async def claim_at_once(
    engine: BatchedClaims, coupon: str, users: list[str]
) -> list[ClaimOutcome | BaseException]:
    return await asyncio.gather(
        *(outcome_of(engine, coupon_name=coupon, user_id=user) for user in users),
        return_exceptions=True,
    )


def claim_later(engine: BatchedClaims, coupon: str, user: str) -> asyncio.Task[ClaimOutcome]:
    return asyncio.create_task(outcome_of(engine, coupon_name=coupon, user_id=user))


async def until(condition: Callable[[], bool], ticks: int = 100) -> None:
    """Let the event loop run until ``condition`` holds (no clock involved)."""
    for _ in range(ticks):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never came true")


async def batch_held(
    store: FakeClaimStore, engine: BatchedClaims, coupon: str, user: str
) -> asyncio.Task[ClaimOutcome]:
    """``user``'s claim on ``coupon``, sent in a batch that waits at the
    store's gate: what comes next queues behind it."""
    store.gate.clear()
    sent = len(store.batches)
    first = claim_later(engine, coupon, user)
    await until(lambda: len(store.batches) == sent + 1)
    return first


async def first_batch_held(
    store: FakeClaimStore, user: str
) -> tuple[BatchedClaims, asyncio.Task[ClaimOutcome]]:
    """An engine whose first batch (``user``'s claim on C) waits at the store."""
    engine = engine_on(store)
    return engine, await batch_held(store, engine, "C", user)


async def a_and_b_claimed_then_c_held(
    store: FakeClaimStore, amount: int
) -> tuple[BatchedClaims, asyncio.Task[ClaimOutcome]]:
    """Coupon C with a's and b's claims granted, then c's batch (in flight,
    taking a unit) waiting at the store's gate: what comes next queues behind it."""
    store.create("C", amount)
    engine = engine_on(store)
    assert await claim_at_once(engine, "C", ["a", "b"]) == [CLAIMED, CLAIMED]
    return engine, await batch_held(store, engine, "C", "c")


async def sold_out_to_b(store: FakeClaimStore) -> BatchedClaims:
    """An engine that sold C's one unit to a and told b it was sold out."""
    store.create("C", 1)
    engine = engine_on(store)
    assert await outcome_of(engine, coupon_name="C", user_id="a") is CLAIMED
    assert await outcome_of(engine, coupon_name="C", user_id="b") is SOLD_OUT
    return engine


async def settle(ticks: int = 10) -> None:
    for _ in range(ticks):
        await asyncio.sleep(0)


async def test_concurrent_claims_on_one_coupon_go_in_one_batch(store: FakeClaimStore) -> None:
    store.create("C", 10)
    outcomes = await claim_at_once(engine_on(store), "C", ["a", "b", "c"])
    assert outcomes == [CLAIMED] * 3
    assert store.batches == [Batch("decide_batch", "C", ["a", "b", "c"])]


async def test_claims_arriving_during_a_batch_go_together_in_the_next(
    store: FakeClaimStore,
) -> None:
    store.create("C", 10)
    engine, first = await first_batch_held(store, "first")
    later = [claim_later(engine, "C", f"u{i}") for i in range(4)]
    await settle()
    store.gate.set()
    assert await first is CLAIMED
    assert [await task for task in later] == [CLAIMED] * 4
    assert [batch.users for batch in store.batches] == [["first"], ["u0", "u1", "u2", "u3"]]


async def test_claims_on_different_coupons_share_one_call_each_in_its_part(
    store: FakeClaimStore,
) -> None:
    store.create("A", 5)
    store.create("B", 5)
    engine = engine_on(store)
    outcomes = await asyncio.gather(
        outcome_of(engine, coupon_name="A", user_id="x"),
        outcome_of(engine, coupon_name="B", user_id="y"),
        outcome_of(engine, coupon_name="A", user_id="z"),
    )
    assert list(outcomes) == [CLAIMED] * 3
    assert store.batches == [Batch("decide_coupons", "A+B", ["x", "z", "y"])]
    assert store.coupons["A"].holders == ["x", "z"]
    assert store.coupons["B"].holders == ["y"]


async def test_a_batch_holds_at_most_max_batch_claims_in_arrival_order(
    store: FakeClaimStore,
) -> None:
    store.create("C", 100)
    users = [f"u{i}" for i in range(7)]
    await claim_at_once(engine_on(store, max_batch=3), "C", users)
    assert [batch.users for batch in store.batches] == [users[0:3], users[3:6], users[6:]]


async def test_repeats_of_a_user_in_a_batch_are_sent_as_they_came_and_answered_by_position(
    store: FakeClaimStore,
) -> None:
    store.create("C", 5)
    outcomes = await claim_at_once(engine_on(store), "C", ["a", "a", "b", "a"])
    assert store.batches == [Batch("decide_batch", "C", ["a", "a", "b", "a"])]
    assert outcomes == [CLAIMED, ALREADY, CLAIMED, ALREADY]


async def test_once_a_batch_sells_the_coupon_out_later_claims_take_the_sold_out_read(
    store: FakeClaimStore,
) -> None:
    store.create("C", 2)
    engine = engine_on(store)
    assert await claim_at_once(engine, "C", ["a", "b", "c"]) == [CLAIMED, CLAIMED, SOLD_OUT]
    assert await claim_at_once(engine, "C", ["d", "a"]) == [SOLD_OUT, ALREADY]
    assert store.batches == [
        Batch("decide_batch", "C", ["a", "b", "c"]),
        Batch("sold_out_batch", "C", ["d", "a"]),
    ]


async def test_a_batch_that_leaves_stock_keeps_claims_in_the_claim_lane(
    store: FakeClaimStore,
) -> None:
    store.create("C", 3)
    engine = engine_on(store)
    for user in ("a", "b", "c", "d"):
        await outcome_of(engine, coupon_name="C", user_id=user)
    assert [batch.call for batch in store.batches] == ["decide_batch"] * 3 + ["sold_out_batch"]


async def test_a_coupon_recreated_under_its_name_sends_claims_back_to_the_claim_lane(
    store: FakeClaimStore,
) -> None:
    engine = await sold_out_to_b(store)
    store.create("C", 5)  # a new coupon, a new id: the hint is stale
    assert await outcome_of(engine, coupon_name="C", user_id="b") is CLAIMED
    assert await outcome_of(engine, coupon_name="C", user_id="c") is CLAIMED
    assert [batch.call for batch in store.batches] == [
        "decide_batch",
        "sold_out_batch",
        "sold_out_batch",  # the read finds another coupon and answers nothing
        "decide_batch",  # which decides b's claim
        "decide_batch",  # the stale hint is gone
    ]


async def test_stock_back_on_a_sold_out_coupon_sends_claims_back_to_the_claim_lane(
    store: FakeClaimStore,
) -> None:
    engine = await sold_out_to_b(store)
    store.coupons["C"].holders.remove("a")  # an operator deletes a's claim
    assert await outcome_of(engine, coupon_name="C", user_id="b") is CLAIMED
    assert await outcome_of(engine, coupon_name="C", user_id="c") is SOLD_OUT
    assert [batch.call for batch in store.batches] == [
        "decide_batch",
        "sold_out_batch",
        "sold_out_batch",  # the same coupon, but with stock: no answer
        "decide_batch",  # b takes the stock back and sells the coupon out again
        "sold_out_batch",
    ]


async def test_an_unknown_coupon_is_not_found_for_every_claim_and_sets_no_hint(
    store: FakeClaimStore,
) -> None:
    engine = engine_on(store)
    assert await claim_at_once(engine, "NOPE", ["a", "b"]) == [NOT_FOUND, NOT_FOUND]
    assert await outcome_of(engine, coupon_name="NOPE", user_id="c") is NOT_FOUND
    assert [batch.call for batch in store.batches] == ["decide_batch", "decide_batch"]


async def test_a_sold_out_coupon_that_was_deleted_is_not_found_and_loses_its_hint(
    store: FakeClaimStore,
) -> None:
    store.create("C", 1)
    engine = engine_on(store)
    assert await outcome_of(engine, coupon_name="C", user_id="a") is CLAIMED
    del store.coupons["C"]
    assert await outcome_of(engine, coupon_name="C", user_id="b") is NOT_FOUND
    store.create("C", 1)
    assert await outcome_of(engine, coupon_name="C", user_id="b") is CLAIMED
    assert [batch.call for batch in store.batches] == [
        "decide_batch",
        "sold_out_batch",
        "decide_batch",
    ]


async def test_an_error_in_claim_many_reaches_every_waiter(store: FakeClaimStore) -> None:
    store.create("C", 10)
    store.gate.clear()
    engine = engine_on(store, max_batch=2)
    waiting = [claim_later(engine, "C", f"u{i}") for i in range(5)]
    await until(lambda: len(store.batches) == 1)
    store.failure = error = RuntimeError("the connection broke")
    store.gate.set()
    outcomes = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(outcome is error for outcome in outcomes)
    assert [len(batch.users) for batch in store.batches] == [2, 2, 1]
    store.failure = None
    assert await outcome_of(engine, coupon_name="C", user_id="after") is CLAIMED


async def test_a_caller_cancelled_before_its_batch_is_sent_is_never_sent(
    store: FakeClaimStore,
) -> None:
    store.create("C", 10)
    engine, in_flight = await first_batch_held(store, "in-flight")
    queued = {user: claim_later(engine, "C", user) for user in ("stays", "leaves", "stays-too")}
    await settle()  # all three wait behind the batch in flight
    queued["leaves"].cancel()
    store.gate.set()
    assert await in_flight is CLAIMED
    assert await queued["stays"] is CLAIMED
    assert await queued["stays-too"] is CLAIMED
    with pytest.raises(asyncio.CancelledError):
        await queued["leaves"]
    assert [batch.users for batch in store.batches] == [["in-flight"], ["stays", "stays-too"]]
    assert store.coupons["C"].holders == ["in-flight", "stays", "stays-too"]


async def test_a_caller_cancelled_while_its_batch_is_in_flight_keeps_its_claim(
    store: FakeClaimStore,
) -> None:
    store.create("C", 10)
    engine, leaving = await first_batch_held(store, "leaves")
    leaving.cancel()
    await settle()
    store.gate.set()
    await engine.close()
    assert leaving.cancelled()
    assert store.coupons["C"].holders == ["leaves"]  # what the store decided stands


async def test_claims_past_the_queue_cap_are_refused_with_service_unavailable(
    store: FakeClaimStore,
) -> None:
    store.create("C", 100)
    engine = engine_on(store, max_batch=10, max_queue=3)
    outcomes = await claim_at_once(engine, "C", [f"u{i}" for i in range(10)])
    # All ten arrive before the first batch leaves: three wait, the rest are refused.
    assert outcomes[:3] == [CLAIMED] * 3
    refused = [outcome for outcome in outcomes[3:] if isinstance(outcome, ServiceUnavailable)]
    assert len(refused) == 7
    assert all(outcome.retry_after >= 1 for outcome in refused)
    assert store.batches == [Batch("decide_batch", "C", ["u0", "u1", "u2"])]


async def test_each_batch_is_reported_with_its_lane_and_size(store: FakeClaimStore) -> None:
    store.create("C", 2)
    seen: list[tuple[str, int]] = []
    engine = BatchedClaims(
        store, max_batch=100, max_queue=1000, on_batch=lambda lane, size: seen.append((lane, size))
    )
    await claim_at_once(engine, "C", ["a", "b", "c"])
    await claim_at_once(engine, "C", ["d", "e"])
    assert seen == [("claim", 3), ("sold_out", 2)]


async def test_close_waits_for_the_batches_in_flight(store: FakeClaimStore) -> None:
    store.create("C", 1)
    engine, claim = await first_batch_held(store, "a")
    closing = asyncio.create_task(engine.close())
    await settle()
    assert not closing.done()
    store.gate.set()
    await closing
    assert claim.done()
    assert claim.result() is CLAIMED


async def test_a_release_rides_in_the_next_claim_batch_and_its_unit_goes_to_it(
    store: FakeClaimStore,
) -> None:
    engine, first = await a_and_b_claimed_then_c_held(store, 3)  # c takes the last unit
    release = asyncio.create_task(engine.release(coupon_name="C", user_id="a"))
    later = claim_later(engine, "C", "d")
    await settle()
    store.gate.set()
    assert await first is CLAIMED
    assert (await release).outcome is ReleaseOutcome.RELEASED
    assert await later is CLAIMED  # the released unit, in the same batch
    # One call for the release and the claim behind it: releases first.
    assert store.batches[2:] == [Batch("decide_batch", "C", ["a", "d"])]


async def test_a_release_of_no_claim_or_no_coupon_says_so(store: FakeClaimStore) -> None:
    store.create("C", 2)
    engine = engine_on(store)
    decision = await engine.release(coupon_name="C", user_id="x")
    assert decision.outcome is ReleaseOutcome.CLAIM_NOT_FOUND
    decision = await engine.release(coupon_name="NOPE", user_id="x")
    assert decision.outcome is ReleaseOutcome.NOT_FOUND


OPERATOR = Caller(CallerKind.OPERATOR, name="ops-desk")
SHOP = Caller(CallerKind.BACKEND, name="shop")


async def test_releases_of_two_callers_in_one_batch_each_carry_their_own(
    store: FakeClaimStore,
) -> None:
    engine, first = await a_and_b_claimed_then_c_held(store, 5)  # the releases queue behind c
    releases = [
        asyncio.create_task(engine.release(coupon_name="C", user_id="a", actor=OPERATOR)),
        asyncio.create_task(engine.release(coupon_name="C", user_id="b", actor=SHOP)),
        asyncio.create_task(engine.release(coupon_name="C", user_id="x")),
    ]
    await settle()
    store.gate.set()
    assert await first is CLAIMED
    outcomes = [(await task).outcome for task in releases]
    assert outcomes == [RELEASED, RELEASED, ReleaseOutcome.CLAIM_NOT_FOUND]
    assert store.batches[2:] == [Batch("decide_batch", "C", ["a", "b", "x"])]  # one call
    assert store.released_by == [("C", "a", OPERATOR), ("C", "b", SHOP), ("C", "x", None)]
