"""A lane's batch with Idempotency-Keys in some parts, on PostgreSQL (SQL
claim_many_coupons_keyed): keyed and unkeyed parts of several coupons are
decided in one call of the store, each key's decision is stored with it in
that transaction, and a replay of each key answers that decision."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from flashsale.claims.batched import BatchedClaims
from flashsale.claims.ports import BatchResult, CouponPart
from flashsale.domain import (
    ClaimDecision,
    ClaimOutcome,
    IdempotencyKey,
    ReleaseDecision,
    ReleaseOutcome,
)
from flashsale.service.ports import NewCoupon
from flashsale.storage.store import CouponStore
from tests.integration.test_batched_engine import coupon_locked
from tests.support.invariants import assert_invariants
from tests.support.locks import wait_until_blocked

CLAIMED = ClaimOutcome.CLAIMED
CLAIM_SCOPE, RELEASE_SCOPE = "POST /api/coupons/claim", "DELETE /api/coupons/{name}/claims/{user}"


def claim_key(key: str) -> IdempotencyKey:
    return IdempotencyKey(CLAIM_SCOPE, key, key.encode())


def release_key(key: str) -> IdempotencyKey:
    return IdempotencyKey(RELEASE_SCOPE, key, key.encode())


def counted(calls: list[str], name: str, method: Callable[..., Awaitable[Any]]) -> Any:
    async def call(*args: Any, **kwargs: Any) -> Any:
        calls.append(name)
        return await method(*args, **kwargs)

    return call


async def the_lane_batch(engine: BatchedClaims) -> list[Any]:
    """Keyed and unkeyed claims and releases of four coupons, arriving together."""
    return await asyncio.gather(
        engine.claim(coupon_name="A", user_id="plain-a"),
        engine.claim(coupon_name="B", user_id="plain-b"),
        engine.claim(coupon_name="A", user_id="keyed-a", key=claim_key("ka")),
        engine.claim(coupon_name="K", user_id="u1", key=claim_key("k1")),
        engine.claim(coupon_name="K", user_id="u2", key=claim_key("k2")),
        engine.claim(coupon_name="K", user_id="u3", key=claim_key("k3")),  # sold out
        engine.release(coupon_name="R", user_id="holder", key=release_key("kr")),
        engine.release(coupon_name="R", user_id="nobody", key=release_key("kn")),
    )


async def test_keyed_and_plain_parts_go_in_one_call_and_keys_replay(
    store: CouponStore,
    engine: BatchedClaims,
    database: str,
    db: asyncpg.Connection[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, amount in (("FIRST", 5), ("A", 5), ("B", 5), ("K", 2), ("R", 5)):
        await store.create_coupon(NewCoupon(name=name, amount=amount))
    await store.decide_batch("R", ["holder"])
    calls: list[str] = []
    for name in ("decide_batch", "decide_coupons"):
        monkeypatch.setattr(store, name, counted(calls, name, getattr(store, name)))
    async with coupon_locked(database, "FIRST") as holder:
        first = asyncio.create_task(engine.claim(coupon_name="FIRST", user_id="f"))
        await wait_until_blocked(holder)  # the lane's batch in flight: the rest queue
        batch = asyncio.create_task(the_lane_batch(engine))
        for _ in range(20):
            await asyncio.sleep(0)
    assert (await first).outcome is CLAIMED
    answers = await batch
    assert calls == ["decide_batch", "decide_coupons"]  # FIRST's, then the lane's one call
    plain_a, plain_b, keyed_a, *keyed_k, back, none = answers
    assert [plain_a.outcome, plain_b.outcome, keyed_a.outcome] == [CLAIMED] * 3
    assert sorted(d.outcome for d in keyed_k) == [CLAIMED, CLAIMED, ClaimOutcome.SOLD_OUT]
    assert [back, none] == [
        ReleaseDecision(ReleaseOutcome.RELEASED),
        ReleaseDecision(ReleaseOutcome.CLAIM_NOT_FOUND),
    ]
    stored = await db.fetch("SELECT key, outcome FROM idempotency_keys ORDER BY key")
    assert [(row["key"], row["outcome"]) for row in stored] == [
        ("k1", keyed_k[0].outcome.value),
        ("k2", keyed_k[1].outcome.value),
        ("k3", keyed_k[2].outcome.value),
        ("ka", "claimed"),
        ("kn", "claim_not_found"),
        ("kr", "released"),
    ]
    calls.clear()
    replays = await the_lane_batch(engine)
    assert calls == ["decide_coupons"]
    for answer, replay in zip(answers[2:6], replays[2:6], strict=True):
        assert isinstance(answer, ClaimDecision)
        assert replay == ClaimDecision(answer.outcome, answer.claimed_at, answer.expires_at, True)
    assert replays[6:] == [
        ReleaseDecision(ReleaseOutcome.RELEASED, replayed=True),
        ReleaseDecision(ReleaseOutcome.CLAIM_NOT_FOUND, replayed=True),
    ]
    assert await db.fetchval("SELECT count(*) FROM claims WHERE coupon_name = 'K'") == 2
    await assert_invariants(db)


async def test_a_key_of_another_coupons_request_is_refused_in_the_batch(
    store: CouponStore, db: asyncpg.Connection[Any]
) -> None:
    for name in ("A", "B"):
        await store.create_coupon(NewCoupon(name=name, amount=5))
    await store.decide_batch("A", ["x"], claim_keys=[claim_key("same")])
    reused, plain = await store.decide_coupons(
        [
            CouponPart("B", ["x"], claim_keys=[IdempotencyKey(CLAIM_SCOPE, "same", b"other")]),
            CouponPart("A", ["y"]),
        ]
    )
    assert isinstance(reused, BatchResult)
    assert isinstance(plain, BatchResult)
    [refused] = reused.keyed_claims
    assert refused is not None
    assert (refused.outcome, refused.replayed) == (ClaimOutcome.KEY_REUSED, False)
    assert plain.outcomes == [CLAIMED]
    assert await db.fetchval("SELECT count(*) FROM claims WHERE coupon_name = 'B'") == 0


async def test_a_key_committed_meanwhile_reruns_the_batch_which_then_refuses_it(
    store: CouponStore, database: str, db: asyncpg.Connection[Any]
) -> None:
    for name in ("A", "B"):
        await store.create_coupon(NewCoupon(name=name, amount=5))
    other = await asyncpg.connect(database)  # another coupon's request, holding the key
    try:
        transaction = other.transaction()
        await transaction.start()
        await other.execute(
            "INSERT INTO idempotency_keys (scope, key, fingerprint, outcome)"
            " VALUES ($1, 'race', 'other', 'claimed')",
            CLAIM_SCOPE,
        )
        decided = asyncio.create_task(
            store.decide_coupons(
                [CouponPart("A", ["a"]), CouponPart("B", ["b"], claim_keys=[claim_key("race")])]
            )
        )
        await wait_until_blocked(other)  # the batch's INSERT waits for the key's transaction
        await transaction.commit()
        plain, reused = await decided
    finally:
        await other.close()
    assert isinstance(plain, BatchResult)
    assert isinstance(reused, BatchResult)
    assert plain.outcomes == [CLAIMED]  # decided again in the batch's second attempt
    [refused] = reused.keyed_claims
    assert refused is not None
    assert (refused.outcome, refused.replayed) == (ClaimOutcome.KEY_REUSED, False)
    assert await db.fetchval("SELECT count(*) FROM claims") == 1
    await assert_invariants(db)
