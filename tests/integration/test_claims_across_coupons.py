"""Batches across coupons on PostgreSQL (SQL claim_many_coupons, the store's
decide_coupons): each coupon's part decided as its own batch would be, one
coupon's failure kept to its part, and no deadlock between batches that
name the same coupons in another order."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from flashsale.claims.batched import BatchedClaims
from flashsale.claims.ports import BatchResult, CouponPart
from flashsale.domain import ClaimOutcome, ReleaseOutcome
from flashsale.service.ports import CouponChange, NewCoupon
from flashsale.storage.store import CouponStore
from tests.support.invariants import assert_invariants
from tests.support.stores import StoreFactory, outcome_of

CLAIMED = ClaimOutcome.CLAIMED
BAD_USER = "bad\x01user"  # refused by claims_user_id_format: the INSERT raises


async def gap_free_events(db: asyncpg.Connection[Any], coupon: str) -> bool:
    seqs = await db.fetch("SELECT seq FROM events WHERE coupon_name = $1 ORDER BY seq", coupon)
    return [row["seq"] for row in seqs] == list(range(1, len(seqs) + 1))


async def test_each_part_is_decided_by_its_coupons_rules(
    store: CouponStore, db: asyncpg.Connection[Any]
) -> None:
    await store.create_coupon(NewCoupon(name="OPEN", amount=10))
    await store.create_coupon(NewCoupon(name="TWO", amount=2))
    await store.create_coupon(NewCoupon(name="SHUT", amount=5))
    await store.change_coupon("SHUT", CouponChange(active=False))
    await store.create_coupon(NewCoupon(name="PLENTY", amount=10, hold_seconds=60))
    await store.decide_batch("OPEN", ["held"])
    await store.decide_batch("PLENTY", ["holder"])
    results = await store.decide_coupons(
        [
            CouponPart("PLENTY", ["p1", "holder"]),
            CouponPart("OPEN", ["a", "held", "a"], ["held"]),
            CouponPart("TWO", ["x", "y", "z"]),
            CouponPart("SHUT", ["s"]),
            CouponPart("NOWHERE", ["n"]),
        ]
    )
    assert all(isinstance(result, BatchResult) for result in results)
    plenty, open_, two, shut, nowhere = (r for r in results if isinstance(r, BatchResult))
    assert plenty.outcomes == [CLAIMED, ClaimOutcome.ALREADY_CLAIMED]
    assert plenty.remaining == 8
    assert plenty.expires_at is not None
    assert plenty.claimed_at is not None
    assert (plenty.expires_at - plenty.claimed_at).total_seconds() == 60
    assert open_.outcomes == [CLAIMED, CLAIMED, ClaimOutcome.ALREADY_CLAIMED]
    assert open_.releases == [ReleaseOutcome.RELEASED]
    assert two.outcomes == [CLAIMED, CLAIMED, ClaimOutcome.SOLD_OUT]
    assert two.remaining == 0
    assert shut.outcomes == [ClaimOutcome.PAUSED]
    assert nowhere.outcomes == [ClaimOutcome.NOT_FOUND]
    await assert_invariants(db)
    for coupon in ("PLENTY", "OPEN", "TWO", "SHUT"):
        assert await gap_free_events(db, coupon)


async def test_a_sold_out_part_answers_as_its_own_batch_would(
    store: CouponStore, db: asyncpg.Connection[Any]
) -> None:
    await store.create_coupon(NewCoupon(name="GONE", amount=1, hold_seconds=60))
    await store.create_coupon(NewCoupon(name="MORE", amount=5))
    await store.decide_batch("GONE", ["first"])
    alone = await store.decide_batch("GONE", ["late", "first"])
    results = await store.decide_coupons(
        [CouponPart("GONE", ["later", "first", "later"]), CouponPart("MORE", ["m"])]
    )
    assert all(isinstance(result, BatchResult) for result in results)
    gone, more = (r for r in results if isinstance(r, BatchResult))
    assert alone.outcomes == [ClaimOutcome.SOLD_OUT, ClaimOutcome.ALREADY_CLAIMED]
    assert gone.outcomes == [
        ClaimOutcome.SOLD_OUT,
        ClaimOutcome.ALREADY_CLAIMED,
        ClaimOutcome.SOLD_OUT,
    ]
    assert (gone.coupon_id, gone.remaining) == (alone.coupon_id, 0)
    assert alone.remaining == 0
    assert more.outcomes == [CLAIMED]
    await assert_invariants(db)
    assert await gap_free_events(db, "MORE")


async def test_a_batch_without_a_common_part_or_without_a_sold_out_part_decides_alike(
    store: CouponStore, db: asyncpg.Connection[Any]
) -> None:
    """claim_many_coupons skips its common-part INSERT when no part has stock
    for all its users, and its sold-out statement when no part is sold out
    (0025): such batches answer as before and keep each coupon's events."""
    coupons = {"GONE": 1, "GONE_TOO": 1, "WIDE": 5, "ROOM": 5, "LAST": 2}
    for name, amount in coupons.items():
        await store.create_coupon(NewCoupon(name=name, amount=amount))
        await store.decide_batch(name, ["first"])
    # Sold out and scarce (5 users for 4 units): no common part.
    no_common = await store.decide_coupons(
        [CouponPart("GONE", ["later", "first"]), CouponPart("WIDE", ["w1", "w2", "w3", "w4", "w5"])]
    )
    only_sold_out = await store.decide_coupons(
        [CouponPart("GONE_TOO", ["first", "late"]), CouponPart("GONE", ["last"])]
    )
    # A common part and a scarce one (2 users for 1 unit): none sold out.
    no_sold_out = await store.decide_coupons(
        [CouponPart("ROOM", ["r1", "first"]), CouponPart("LAST", ["l1", "l2"])]
    )
    assert [outcome_list(r) for r in no_common] == [
        [ClaimOutcome.SOLD_OUT, ClaimOutcome.ALREADY_CLAIMED],
        [CLAIMED] * 4 + [ClaimOutcome.SOLD_OUT],
    ]
    assert [outcome_list(r) for r in only_sold_out] == [
        [ClaimOutcome.ALREADY_CLAIMED, ClaimOutcome.SOLD_OUT],
        [ClaimOutcome.SOLD_OUT],
    ]
    assert [outcome_list(r) for r in no_sold_out] == [
        [CLAIMED, ClaimOutcome.ALREADY_CLAIMED],
        [CLAIMED, ClaimOutcome.SOLD_OUT],
    ]
    await assert_invariants(db)
    for coupon in coupons:
        assert await gap_free_events(db, coupon)


def outcome_list(result: object) -> list[ClaimOutcome]:
    assert isinstance(result, BatchResult)
    return result.outcomes


async def test_a_part_that_fails_fails_alone_and_the_others_commit(
    store: CouponStore, db: asyncpg.Connection[Any]
) -> None:
    for name in ("A", "BAD", "B"):
        await store.create_coupon(NewCoupon(name=name, amount=5))
    results = await store.decide_coupons(
        [CouponPart("A", ["a1", "a2"]), CouponPart("BAD", [BAD_USER]), CouponPart("B", ["b1"])]
    )
    a, bad, b = results
    assert isinstance(a, BatchResult)
    assert a.outcomes == [CLAIMED, CLAIMED]
    assert isinstance(bad, asyncpg.CheckViolationError)
    assert isinstance(b, BatchResult)
    assert b.outcomes == [CLAIMED]
    rows = await db.fetch("SELECT coupon_name, user_id FROM claims ORDER BY id")
    assert [(row["coupon_name"], row["user_id"]) for row in rows] == [
        ("A", "a1"),
        ("A", "a2"),
        ("B", "b1"),
    ]
    assert await db.fetchval("SELECT remaining_amount FROM coupons WHERE name = 'BAD'") == 5
    await assert_invariants(db)
    for coupon in ("A", "BAD", "B"):
        assert await gap_free_events(db, coupon)


async def test_the_engine_answers_a_failed_part_with_its_error_only(
    store: CouponStore, db: asyncpg.Connection[Any]
) -> None:
    for name in ("A", "BAD"):
        await store.create_coupon(NewCoupon(name=name, amount=5))
    engine = BatchedClaims(store, max_batch=500, max_queue=1000, lanes=1)
    outcomes = await asyncio.gather(
        outcome_of(engine, coupon_name="A", user_id="a1"),
        outcome_of(engine, coupon_name="BAD", user_id=BAD_USER),
        outcome_of(engine, coupon_name="A", user_id="a2"),
        return_exceptions=True,
    )
    assert outcomes[0] is CLAIMED
    assert outcomes[2] is CLAIMED
    assert isinstance(outcomes[1], asyncpg.CheckViolationError)
    await assert_invariants(db)


async def test_batches_in_any_order_and_other_writers_never_deadlock(
    make_store: StoreFactory, db: asyncpg.Connection[Any]
) -> None:
    stores = [await make_store(DB_POOL_MIN="1") for _ in range(4)]
    names = [f"C{i}" for i in range(6)]
    for name in names:
        await stores[0].create_coupon(NewCoupon(name=name, amount=1_000))

    async def rounds(store: CouponStore, order: list[str], tag: str) -> None:
        for i in range(20):
            parts = [CouponPart(name, [f"{tag}-{i}"]) for name in order]
            results = await store.decide_coupons(parts)
            assert all(isinstance(result, BatchResult) for result in results)

    async def other_writers(store: CouponStore) -> None:
        # PATCH (one coupon row each) and the sweeper (SKIP LOCKED) meanwhile.
        for i in range(20):
            name = names[(i * 5) % len(names)]
            await store.change_coupon(name, CouponChange(amount=1_000 + i))
            await store.expire_holds()

    await asyncio.gather(
        rounds(stores[0], names, "up"),
        rounds(stores[1], names[::-1], "down"),
        rounds(stores[2], names[3:] + names[:3], "mid"),
        other_writers(stores[3]),
    )
    assert await db.fetchval("SELECT count(*) FROM claims") == 3 * 20 * len(names)
    await assert_invariants(db)


async def test_one_read_answers_several_sold_out_coupons(store: CouponStore) -> None:
    await store.create_coupon(NewCoupon(name="ONE", amount=1))
    await store.create_coupon(NewCoupon(name="TWO", amount=2))
    await store.decide_coupons([CouponPart("ONE", ["a"]), CouponPart("TWO", ["b", "c"])])
    reads = await store.sold_out_coupons(
        [
            CouponPart("ONE", ["a", "x"]),
            CouponPart("NOWHERE", ["y"]),
            CouponPart("TWO", ["z", "c", "b"]),
        ]
    )
    assert [read.holds for read in reads] == [[True, False], [False], [False, True, True]]
    assert [read.remaining for read in reads] == [0, None, 0]
    assert reads[1].coupon_id is None


async def test_the_sold_out_reads_probe_each_arrival_never_hash_every_claim(
    store: CouponStore, db: asyncpg.Connection[Any]
) -> None:
    """With a few thousand claims, PostgreSQL preferred hashing every claim
    of every coupon, on each read, to one primary-key probe per arrival
    (an EXISTS planned as a hashed subplan): a read's cost grew with the
    table. The probe is fenced off (0025): the plan reads claims by index."""
    await store.create_coupon(NewCoupon(name="BIG", amount=5_000))
    await db.execute(
        "SELECT claim_many('BIG', ARRAY(SELECT 'u' || g FROM generate_series(1, 5000) AS g))"
    )
    await db.execute("ANALYZE claims")
    users = [f"new-{i}" for i in range(40)]
    plans = [
        await db.fetch("EXPLAIN SELECT holds FROM sold_out_batch($1, $2::text[])", "BIG", users),
        await db.fetch(
            "EXPLAIN SELECT holds FROM sold_out_coupons($1::text[], $2::integer[], $3::text[])",
            ["BIG", "BIG_TOO"],
            [20, 20],
            users,
        ),
    ]
    for plan in plans:
        text = "\n".join(row[0] for row in plan)
        assert "Seq Scan on claims" not in text, text
        assert "hashed SubPlan" not in text, text
    reads = await store.sold_out_coupons([CouponPart("BIG", ["u7", "new-1"])])
    assert reads[0].holds == [True, False]
