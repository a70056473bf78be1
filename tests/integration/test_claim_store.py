"""The store's claim statements: claim_many decides a batch of claims in one
round trip, sold_out_batch reads without the coupon's lock, claim_one is the
transaction strategy's; the schema's own guards behind them."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from flashsale.domain import ClaimOutcome, ReleaseOutcome
from flashsale.service.ports import NewCoupon
from flashsale.storage.store import CouponStore
from tests.support.invariants import assert_invariants

CLAIMED = ClaimOutcome.CLAIMED
ALREADY = ClaimOutcome.ALREADY_CLAIMED
SOLD_OUT = ClaimOutcome.SOLD_OUT


async def claimers(db: asyncpg.Connection[Any], coupon: str) -> list[str]:
    rows = await db.fetch("SELECT user_id FROM claims WHERE coupon_name = $1 ORDER BY id", coupon)
    return [row["user_id"] for row in rows]


@pytest.mark.parametrize(
    ("amount", "users", "expected", "remaining", "holders"),
    [
        pytest.param(
            3,
            ["e", "d", "c", "b", "a"],
            [CLAIMED, CLAIMED, CLAIMED, SOLD_OUT, SOLD_OUT],
            0,
            ["e", "d", "c"],
            id="stock_goes_to_the_earliest_arrivals",
        ),
        pytest.param(
            10,
            ["a", "b", "a", "a", "c", "b"],
            [CLAIMED, CLAIMED, ALREADY, ALREADY, CLAIMED, ALREADY],
            7,
            ["a", "b", "c"],
            id="a_user_twice_in_one_batch_gets_one_claim",
        ),
    ],
)
async def test_a_batch_is_decided_in_arrival_order(
    store: CouponStore,
    db: asyncpg.Connection[Any],
    amount: int,
    users: list[str],
    expected: list[ClaimOutcome],
    remaining: int,
    holders: list[str],
) -> None:
    await store.create_coupon(NewCoupon(name="C", amount=amount))
    result = await store.decide_batch("C", users)
    assert result.outcomes == expected
    assert result.remaining == remaining
    assert await claimers(db, "C") == holders
    await assert_invariants(db)


@pytest.mark.parametrize(
    ("amount", "users", "expected"),
    [
        pytest.param(
            1,
            ["a", "b", "b"],
            [CLAIMED, SOLD_OUT, SOLD_OUT],
            id="duplicates_of_a_user_who_missed_the_stock_are_sold_out_too",
        ),
        pytest.param(
            2,
            ["a", "a", "a", "b"],
            [CLAIMED, ALREADY, ALREADY, CLAIMED],
            id="duplicates_do_not_use_up_stock_meant_for_later_users",
        ),
    ],
)
async def test_duplicates_in_a_batch_are_answered_by_position(
    store: CouponStore, amount: int, users: list[str], expected: list[ClaimOutcome]
) -> None:
    await store.create_coupon(NewCoupon(name="C", amount=amount))
    result = await store.decide_batch("C", users)
    assert result.outcomes == expected


async def test_holders_hear_already_claimed_even_at_sell_out(
    store: CouponStore, db: asyncpg.Connection[Any]
) -> None:
    await store.create_coupon(NewCoupon(name="C", amount=2))
    await store.decide_batch("C", ["a"])
    result = await store.decide_batch("C", ["x", "a", "y"])
    assert result.outcomes == [CLAIMED, ALREADY, SOLD_OUT]
    sold_out = await store.decide_batch("C", ["a", "z"])
    assert sold_out.outcomes == [ALREADY, SOLD_OUT]
    await assert_invariants(db)


async def test_an_unknown_coupon_is_not_found_for_every_position(store: CouponStore) -> None:
    result = await store.decide_batch("NOPE", ["a", "b"])
    assert result.outcomes == [ClaimOutcome.NOT_FOUND] * 2
    assert result.coupon_id is None


async def test_the_sold_out_read_tells_holders_from_others(store: CouponStore) -> None:
    await store.create_coupon(NewCoupon(name="C", amount=1))
    claimed = await store.decide_batch("C", ["a"])
    read = await store.sold_out_batch("C", ["b", "a"])
    assert read.holds == [False, True]
    assert (read.coupon_id, read.remaining) == (claimed.coupon_id, 0)


async def test_the_transaction_strategy_statement_agrees(
    store: CouponStore, db: asyncpg.Connection[Any]
) -> None:
    await store.create_coupon(NewCoupon(name="C", amount=1))
    assert (await store.claim_one(coupon_name="C", user_id="a")).outcome is CLAIMED
    assert (await store.claim_one(coupon_name="C", user_id="a")).outcome is ALREADY
    assert (await store.claim_one(coupon_name="C", user_id="b")).outcome is SOLD_OUT
    assert (
        await store.claim_one(coupon_name="NOPE", user_id="a")
    ).outcome is ClaimOutcome.NOT_FOUND
    await assert_invariants(db)


async def test_the_schema_refuses_an_oversell_by_hand(
    store: CouponStore, db: asyncpg.Connection[Any]
) -> None:
    await store.create_coupon(NewCoupon(name="C", amount=1))
    with pytest.raises(asyncpg.CheckViolationError) as refused:
        await db.execute(
            "INSERT INTO claims (coupon_id, coupon_name, user_id) "
            "SELECT id, name, u FROM coupons, unnest(ARRAY['a', 'b']) AS u WHERE name = 'C'"
        )
    assert refused.value.constraint_name == "coupons_remaining_not_negative"
    assert await claimers(db, "C") == []


async def test_stock_follows_claims_deleted_by_an_operator(
    store: CouponStore, db: asyncpg.Connection[Any]
) -> None:
    await store.create_coupon(NewCoupon(name="C", amount=2))
    await store.decide_batch("C", ["a", "b"])
    await db.execute("DELETE FROM claims WHERE user_id = 'a'")
    assert await db.fetchval("SELECT remaining_amount FROM coupons WHERE name = 'C'") == 1
    await assert_invariants(db)


async def test_releases_in_a_claim_batch_go_first_and_their_units_to_its_claims(
    store: CouponStore, db: asyncpg.Connection[Any]
) -> None:
    await store.create_coupon(NewCoupon(name="REL", amount=2, hold_seconds=60))
    await store.decide_batch("REL", ["a", "b"])
    await store.redeem_claim(coupon_name="REL", user_id="b")
    result = await store.decide_batch("REL", ["c", "d"], ["a", "b", "nobody", "a"])
    assert result.releases == [
        ReleaseOutcome.RELEASED,
        ReleaseOutcome.ALREADY_REDEEMED,
        ReleaseOutcome.CLAIM_NOT_FOUND,
        ReleaseOutcome.CLAIM_NOT_FOUND,  # a's unit came back once
    ]
    assert result.outcomes == [ClaimOutcome.CLAIMED, ClaimOutcome.SOLD_OUT]
    assert await db.fetchval("SELECT array_agg(reason) FROM claim_history") == ["released"]
    missing = await store.decide_batch("NOPE", [], ["a"])
    assert missing.releases == [ReleaseOutcome.NOT_FOUND]
    await assert_invariants(db)


async def test_a_due_hold_is_not_live_for_a_batch_even_before_it_is_swept(
    store: CouponStore, db: asyncpg.Connection[Any]
) -> None:
    """Plenty of stock and a hold just due: the batch sweeps only when a user
    it refuses may be that hold's holder; otherwise the hold is simply not live."""
    await store.create_coupon(NewCoupon(name="DUE", amount=100, hold_seconds=60))
    await store.decide_batch("DUE", ["a", "b", "c"])
    await db.execute(
        "UPDATE claims SET expires_at = now() - interval '1 millisecond' WHERE coupon_name = 'DUE'"
    )
    result = await store.decide_batch("DUE", ["a", "new"], ["b"])
    assert result.releases == [ReleaseOutcome.CLAIM_NOT_FOUND]  # b's hold is due: gone
    assert result.outcomes == [CLAIMED, CLAIMED]  # a's due hold swept, a claims again
    reasons = await db.fetch("SELECT user_id, reason FROM claim_history ORDER BY user_id")
    assert [(r["user_id"], r["reason"]) for r in reasons] == [
        ("a", "expired"),
        ("b", "expired"),
        ("c", "expired"),
    ]
    await db.execute("UPDATE claims SET expires_at = now() - interval '1 millisecond'")
    await db.execute("UPDATE coupons SET active = false")
    paused = await store.decide_batch("DUE", ["a", "x"])
    assert paused.outcomes == [ClaimOutcome.PAUSED, ClaimOutcome.PAUSED]  # a's hold is due
    await assert_invariants(db)
