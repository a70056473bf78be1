"""Idempotency keys in the store: a retry waits for an attempt still in
flight and answers its outcome (409 only past lock_timeout), keyed claims
from several processes make one effect, and old keys are purged in batches."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest

from flashsale.claims.batched import BatchedClaims
from flashsale.domain import (
    ClaimOutcome,
    DomainError,
    IdempotencyKey,
    IdempotencyKeyInUse,
)
from flashsale.service.key_purge import KeyPurge
from flashsale.service.ports import Answer, CouponState, NewCoupon, Once
from flashsale.storage.store import CouponStore
from tests.support.locks import wait_until_blocked
from tests.support.stores import StoreFactory
from tests.support.traffic import PROMPT

if TYPE_CHECKING:
    from asyncpg.transaction import Transaction

    Connection = asyncpg.Connection[Any]

KEY = IdempotencyKey("POST /api/coupons", "k-1", b"fingerprint")


def render(result: CouponState | DomainError) -> Answer:
    if isinstance(result, DomainError):
        return Answer(409, result.code.encode())
    return Answer(201, result.name.encode())


async def hold_key(db: Connection, answer: bytes) -> Transaction:
    """Another attempt with KEY, in its transaction: the key taken, the answer
    stored, not committed yet."""
    transaction = db.transaction()
    await transaction.start()
    await db.execute("SELECT take_idempotency_key($1, $2, $3)", KEY.scope, KEY.key, KEY.fingerprint)
    await db.execute(
        "UPDATE idempotency_keys SET status = 201, body = $1 WHERE key = $2", answer, KEY.key
    )
    return transaction


async def retry_behind(
    store: CouponStore, db: Connection, answer: bytes, name: str
) -> tuple[Transaction, asyncio.Future[Answer]]:
    """Another attempt holding KEY, and a retry with KEY started behind it."""
    first = await hold_key(db, answer)
    retry = asyncio.ensure_future(store.create_coupon(NewCoupon(name, 1), Once(KEY, render)))
    await wait_until_blocked(db)  # the retry waits on the uncommitted key row
    return first, retry


async def test_a_retry_waits_for_the_attempt_in_flight_and_answers_its_outcome(
    store: CouponStore, db: Connection
) -> None:
    first, retry = await retry_behind(store, db, b"first attempt", "W")
    assert not retry.done()  # waiting on the uncommitted key row
    await first.commit()
    assert await retry == Answer(201, b"first attempt", replayed=True)
    assert await db.fetchval("SELECT count(*) FROM coupons") == 0  # the retry created nothing


async def test_a_retry_runs_when_the_attempt_in_flight_rolls_back(
    store: CouponStore, db: Connection
) -> None:
    first, retry = await retry_behind(store, db, b"never committed", "R")
    await first.rollback()
    assert await retry == Answer(201, b"R")
    assert await db.fetchval("SELECT count(*) FROM coupons WHERE name = 'R'") == 1


async def test_a_retry_waits_no_longer_than_the_lock_timeout(
    make_store: StoreFactory, db: Connection
) -> None:
    store = await make_store(DB_STATEMENT_TIMEOUT="1")
    first = await hold_key(db, b"slow")
    started = time.monotonic()
    try:
        with pytest.raises(IdempotencyKeyInUse):
            await store.create_coupon(NewCoupon("S", 1), Once(KEY, render))
    finally:
        await first.rollback()
    # Refused while the other request still holds the key (without
    # lock_timeout it would wait for a rollback that comes only after).
    assert time.monotonic() - started < PROMPT


async def test_one_key_claimed_from_two_processes_at_once_claims_once(
    make_store: StoreFactory, db: Connection
) -> None:
    stores = [await make_store(DB_POOL_MIN="1") for _ in range(2)]
    await stores[0].create_coupon(NewCoupon(name="TWO", amount=10))
    engines = [BatchedClaims(s, max_batch=100, max_queue=1000) for s in stores]
    key = IdempotencyKey("POST /api/coupons/claim", "claim-1", b"same request")
    decisions = await asyncio.gather(
        *(
            engine.claim(coupon_name="TWO", user_id="erin", key=key)
            for _ in range(20)
            for engine in engines
        )
    )
    assert {d.outcome for d in decisions} == {ClaimOutcome.CLAIMED}
    assert len({(d.claimed_at, d.expires_at) for d in decisions}) == 1
    assert sum(not d.replayed for d in decisions) == 1
    assert await db.fetchval("SELECT count(*) FROM claims") == 1
    for engine in engines:
        await engine.close()


async def test_keys_past_their_ttl_are_purged_in_batches(
    store: CouponStore, db: Connection
) -> None:
    await db.execute(
        "INSERT INTO idempotency_keys (scope, key, fingerprint, created_at, status, body) "
        "SELECT 's', 'old-' || n, '\\x00', now() - interval '25 hours', 201, '' "
        "FROM generate_series(1, 5) AS n"
    )
    await db.execute(
        "INSERT INTO idempotency_keys (scope, key, fingerprint, status, body) "
        "VALUES ('s', 'new', '\\x00', 201, '')"
    )
    purged = await KeyPurge(store, ttl=86_400, batch=2).purge_once()
    assert purged == 5
    assert await db.fetchval("SELECT array_agg(key) FROM idempotency_keys") == ["new"]


CLAIM_KEY = IdempotencyKey("POST /api/coupons/claim", "shared", b"claim on OTHER")


async def hold_claim_key(db: Connection) -> Transaction:
    """A batch of another coupon that took CLAIM_KEY and has not committed."""
    transaction = db.transaction()
    await transaction.start()
    await db.execute(
        "INSERT INTO idempotency_keys (scope, key, fingerprint, outcome) "
        "VALUES ($1, $2, $3, 'claimed')",
        CLAIM_KEY.scope,
        CLAIM_KEY.key,
        CLAIM_KEY.fingerprint,
    )
    return transaction


@pytest.mark.parametrize("other_commits", [True, False])
async def test_a_key_taken_meanwhile_for_another_coupon_undoes_nothing_but_this_arrival(
    store: CouponStore, db: Connection, other_commits: bool
) -> None:
    await store.create_coupon(NewCoupon(name="MINE", amount=5))
    engine = BatchedClaims(store, max_batch=100, max_queue=1000)
    other = await hold_claim_key(db)
    mine = IdempotencyKey(CLAIM_KEY.scope, CLAIM_KEY.key, b"claim on MINE")
    claim = asyncio.ensure_future(engine.claim(coupon_name="MINE", user_id="fay", key=mine))
    plain = asyncio.ensure_future(engine.claim(coupon_name="MINE", user_id="gus"))
    await wait_until_blocked(db)  # its batch waits for the other request's key
    assert not claim.done()
    await (other.commit() if other_commits else other.rollback())
    decision = await claim
    assert (await plain).outcome is ClaimOutcome.CLAIMED  # its batch mate, claimed once
    holders = await db.fetch("SELECT user_id FROM claims ORDER BY user_id")
    if other_commits:
        assert decision.outcome is ClaimOutcome.KEY_REUSED
        assert [row["user_id"] for row in holders] == ["gus"]
    else:
        assert decision.outcome is ClaimOutcome.CLAIMED
        assert [row["user_id"] for row in holders] == ["fay", "gus"]
    await engine.close()


async def test_a_keyed_batch_probes_only_its_own_keys_under_a_generic_plan(
    store: CouponStore, db: Connection
) -> None:
    """0013: with statistics from when the table was empty and a cached
    generic plan (what a pooled session has after five batches), a keyed
    batch still reads one index entry per stored key of its own, never the
    other keys of the scope (0011 read them all: 13.7 million index tuples
    in an eight-second bench)."""
    await store.create_coupon(NewCoupon(name="PLAN", amount=1_000))
    await db.execute("ANALYZE idempotency_keys")  # empty: the stale statistics
    await db.execute(
        "INSERT INTO idempotency_keys (scope, key, fingerprint, outcome) "
        "SELECT 'POST /api/coupons/claim', 'other-' || n, '\\x00', 'claimed' "
        "FROM generate_series(1, 3000) AS n"
    )
    await db.execute("SET plan_cache_mode = force_generic_plan")
    scope = "POST /api/coupons/claim"
    before = await _index_tuples_read(db)
    for batch in range(3):
        users = [f"u{batch}-{n}" for n in range(20)]
        keys = ["other-1", *(f"mine-{batch}-{n}" for n in range(19))]  # one replayed
        await db.fetchrow(
            "SELECT * FROM claim_many_keyed('PLAN', $1, '{}', $2, $3, $4, 'r', '{}', '{}')",
            users,
            scope,
            keys,
            [b"\x00"] * 20,
        )
    assert await _index_tuples_read(db) - before <= 3 * 20


async def _index_tuples_read(db: Connection) -> int:
    await db.execute("SELECT pg_stat_force_next_flush()")
    read: int = await db.fetchval(
        "SELECT idx_tup_read FROM pg_stat_user_indexes WHERE indexrelname = 'idempotency_keys_pkey'"
    )
    return read


async def test_a_retry_in_a_batch_of_new_keys_rolls_it_back_whole_and_replays(
    store: CouponStore, db: Connection
) -> None:
    """0014: a batch first assumes its keys are new; a retry among them fails
    the key's unique check, the batch rolls back whole (no claim, stock or
    event of it is left) and runs again with the probe, which replays the
    retry and claims its batch mate once."""
    await store.create_coupon(NewCoupon(name="NEW", amount=10))
    engine = BatchedClaims(store, max_batch=100, max_queue=1000)
    scope = "POST /api/coupons/claim"
    ann = IdempotencyKey(scope, "ann-1", b"ann's claim")
    first = await engine.claim(coupon_name="NEW", user_id="ann", key=ann)
    again, bob = await asyncio.gather(
        engine.claim(coupon_name="NEW", user_id="ann", key=ann),
        engine.claim(coupon_name="NEW", user_id="bob", key=IdempotencyKey(scope, "bob-1", b"b")),
    )
    assert (first.outcome, first.replayed) == (ClaimOutcome.CLAIMED, False)
    assert (again.outcome, again.claimed_at, again.replayed) == (
        ClaimOutcome.CLAIMED,
        first.claimed_at,
        True,
    )
    assert (bob.outcome, bob.replayed) == (ClaimOutcome.CLAIMED, False)
    assert await db.fetchval("SELECT remaining_amount FROM coupons") == 8
    assert await db.fetchval("SELECT array_agg(user_id ORDER BY id) FROM claims") == ["ann", "bob"]
    assert await db.fetchval("SELECT array_agg(seq ORDER BY seq) FROM events") == [1, 2, 3]
    stored = await db.fetch("SELECT key, outcome FROM idempotency_keys ORDER BY key")
    assert [tuple(row) for row in stored] == [("ann-1", "claimed"), ("bob-1", "claimed")]
    await engine.close()
