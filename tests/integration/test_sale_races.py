"""Races of the sale's life, with real concurrency on a real database: stock
that comes back (release, expiry, restock) racing claims at sell-out, cuts,
pauses and the end of the window racing claims, two instances sweeping the
same holds, and redeem racing release and expiry. Each ends with the
database's own verdict (find_violations) and the history of ended claims."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

import asyncpg

from flashsale.claims.batched import BatchedClaims
from flashsale.claims.transaction import TransactionPerClaim
from flashsale.domain import AlreadyRedeemed, AmountBelowClaimed, ClaimNotFound, ClaimOutcome
from flashsale.service.ports import CouponChange, NewCoupon
from flashsale.storage.store import CouponStore
from flashsale.storage.verify import find_violations
from tests.support.holds import expire_holds
from tests.support.invariants import assert_invariants
from tests.support.stores import StoreFactory, outcome_of, release_through

CLAIMED = ClaimOutcome.CLAIMED


async def engines_on(make_store: StoreFactory, count: int) -> list[BatchedClaims]:
    """Engines with stores of their own, as separate server processes have."""
    return [BatchedClaims(await make_store(), max_batch=50, max_queue=10_000) for _ in range(count)]


async def coupon_and_instances(
    make_store: StoreFactory, store: CouponStore, coupon: NewCoupon
) -> tuple[list[BatchedClaims], CouponStore]:
    """The coupon, two claiming engines and a store that changes it, each on
    connections of its own as separate server processes have."""
    await store.create_coupon(coupon)
    return await engines_on(make_store, 2), await make_store()


async def claims_across(
    engines: list[BatchedClaims], coupon_name: str, users: list[str]
) -> list[ClaimOutcome]:
    """Each user's claim at once, the users spread over the engines in turn."""
    claims = (
        outcome_of(engines[i % len(engines)], coupon_name=coupon_name, user_id=user)
        for i, user in enumerate(users)
    )
    return list(await asyncio.gather(*claims))


async def live_claims(db: asyncpg.Connection[Any], coupon: str) -> int:
    count: int = await db.fetchval(
        "SELECT count(*) FROM live_claims WHERE coupon_name = $1", coupon
    )
    return count


async def test_releases_and_expiries_racing_claims_at_sell_out_never_oversell(
    make_store: StoreFactory, store: CouponStore, db: asyncpg.Connection[Any]
) -> None:
    await store.create_coupon(NewCoupon(name="R", amount=40, hold_seconds=60))
    engines = await engines_on(make_store, 2)
    holders = [f"h{i}" for i in range(40)]
    for user in holders:
        assert await outcome_of(engines[0], coupon_name="R", user_id=user) is CLAIMED
    released, expired = holders[:15], holders[15:25]
    await expire_holds(db, "R", expired)
    sweeper = await make_store()

    async def claims() -> list[ClaimOutcome]:
        return await claims_across(engines, "R", [f"new{i}" for i in range(300)])

    async def releases() -> None:
        for user in released:
            await release_through(engines[1], coupon_name="R", user_id=user)
            await asyncio.sleep(0)

    outcomes, _, _ = await asyncio.gather(claims(), releases(), sweeper.expire_holds())
    granted = outcomes.count(CLAIMED)
    assert granted <= len(released) + len(expired)
    assert set(outcomes) <= {CLAIMED, ClaimOutcome.SOLD_OUT}
    # Everything returned is claimable at once: no hint answers sold_out now.
    late = [await outcome_of(engines[1], coupon_name="R", user_id=f"late{i}") for i in range(30)]
    assert granted + late.count(CLAIMED) == len(released) + len(expired)
    assert await live_claims(db, "R") == 40
    reasons = Counter(await db.fetchval("SELECT array_agg(reason) FROM claim_history"))
    assert reasons == {"released": 15, "expired": 10}
    await assert_invariants(db)


async def test_a_restock_or_cut_racing_claims_keeps_stock_exact(
    make_store: StoreFactory, store: CouponStore, db: asyncpg.Connection[Any]
) -> None:
    engines, changer = await coupon_and_instances(make_store, store, NewCoupon(name="S", amount=50))
    amounts = [60, 80, 55, 120, 90, 150]
    refused: list[int] = []

    async def changes() -> None:
        for amount in amounts:
            try:
                await changer.change_coupon("S", CouponChange(amount=amount))
            except AmountBelowClaimed:
                refused.append(amount)
            await asyncio.sleep(0.002)

    users = [f"u{i}" for i in range(400)]
    outcomes, _ = await asyncio.gather(claims_across(engines, "S", users), changes())
    row = await db.fetchrow("SELECT amount, remaining_amount FROM coupons WHERE name = 'S'")
    assert row is not None
    amount, remaining = row
    assert list(outcomes).count(CLAIMED) == amount - remaining == await live_claims(db, "S")
    assert amount in [150, *(a for a in amounts if a not in refused)]
    await assert_invariants(db)


async def test_a_cut_below_the_live_claims_is_refused_but_due_holds_do_not_count(
    store: CouponStore, engine: BatchedClaims, db: asyncpg.Connection[Any]
) -> None:
    await store.create_coupon(NewCoupon(name="CUT", amount=5, hold_seconds=60))
    for user in ["a", "b", "c", "d"]:
        await outcome_of(engine, coupon_name="CUT", user_id=user)
    try:
        await store.change_coupon("CUT", CouponChange(amount=2))
    except AmountBelowClaimed:
        pass
    else:
        raise AssertionError("a cut below 4 live claims must be refused")
    await expire_holds(db, "CUT", ["a", "b"])
    cut = await store.change_coupon("CUT", CouponChange(amount=2))
    assert (cut.amount, cut.remaining_amount) == (2, 0)
    await assert_invariants(db)


async def test_no_claim_decided_after_a_pause_committed_is_granted(
    make_store: StoreFactory, store: CouponStore, db: asyncpg.Connection[Any]
) -> None:
    coupon = NewCoupon(name="P", amount=10_000)
    engines, pauser = await coupon_and_instances(make_store, store, coupon)
    after_pause: list[ClaimOutcome] = []
    decided: list[ClaimOutcome] = []
    paused = asyncio.Event()
    midway = asyncio.Event()  # mid-rush by count, not by time: claim speed is not the point

    async def claimer(n: int) -> None:
        for i in range(60):
            seen_pause = paused.is_set()
            outcome = await outcome_of(engines[n % 2], coupon_name="P", user_id=f"u{n}-{i}")
            decided.append(outcome)
            if len(decided) >= 200:
                midway.set()
            if seen_pause:  # sent after the pause's COMMIT returned
                after_pause.append(outcome)

    async def pause() -> None:
        await midway.wait()
        await pauser.change_coupon("P", CouponChange(active=False))
        paused.set()

    await asyncio.gather(*(claimer(n) for n in range(20)), pause())
    assert after_pause
    assert set(after_pause) == {ClaimOutcome.PAUSED}
    granted = await db.fetchval("SELECT count(*) FROM claims WHERE coupon_name = 'P'")
    assert 0 < granted < 1200
    await assert_invariants(db)


async def test_claims_straddling_ends_at_are_never_granted_at_or_after_it(
    make_store: StoreFactory, store: CouponStore, db: asyncpg.Connection[Any]
) -> None:
    engines = await engines_on(make_store, 2)
    # A window that closes while claims run: 0.3 s, longer on a machine too
    # busy to claim anything in it (a new coupon each time), never a timing
    # assertion.
    for attempt, window in enumerate([0.3, 1.2, 4.8, 19.2]):
        name = f"END{attempt}"
        ends_at = await db.fetchval("SELECT now() + $1 * interval '1 second'", window)
        await store.create_coupon(NewCoupon(name=name, amount=100_000, ends_at=ends_at))
        outcomes = await claims_until_ended(engines, name)
        if CLAIMED in outcomes:
            break
    assert set(outcomes) == {CLAIMED, ClaimOutcome.SALE_ENDED}
    late = await db.fetchval(
        "SELECT count(*) FROM claims AS h JOIN coupons AS c ON c.id = h.coupon_id "
        "WHERE h.claimed_at >= c.ends_at"
    )
    assert late == 0
    assert outcomes.count(CLAIMED) == await db.fetchval(
        "SELECT count(*) FROM claims WHERE coupon_name = $1", name
    )
    await assert_invariants(db)


async def claims_until_ended(engines: list[BatchedClaims], name: str) -> list[ClaimOutcome]:
    """Ten claimers, each claiming for new users until it has heard
    sale_ended four times; every answer, in no particular order."""

    async def claimer(n: int) -> list[ClaimOutcome]:
        seen: list[ClaimOutcome] = []
        while seen.count(ClaimOutcome.SALE_ENDED) <= 3:
            user = f"u{n}-{len(seen)}"
            seen.append(await outcome_of(engines[n % 2], coupon_name=name, user_id=user))
        return seen

    return [o for seen in await asyncio.gather(*(claimer(n) for n in range(10))) for o in seen]


async def test_two_instances_expiring_the_same_holds_return_each_unit_once(
    make_store: StoreFactory, store: CouponStore, db: asyncpg.Connection[Any]
) -> None:
    coupons = [f"E{i}" for i in range(5)]
    for name in coupons:
        await store.create_coupon(NewCoupon(name=name, amount=300, hold_seconds=60))
        await db.execute(
            "INSERT INTO claims (coupon_name, user_id) "
            "SELECT $1, 'user-' || g FROM generate_series(1, 300) AS g",
            name,
        )
    await db.execute("UPDATE claims SET expires_at = now() - interval '1 millisecond'")
    sweepers = [await make_store() for _ in range(4)]  # two instances, two workers each
    engines = await engines_on(make_store, 2)

    async def sweep(sweeper: CouponStore) -> int:
        total = 0
        for _ in range(5):
            total += await sweeper.expire_holds()
        return total

    async def claims() -> list[ClaimOutcome]:
        return [
            await outcome_of(engines[i % 2], coupon_name=random.choice(coupons), user_id=f"n{i}")
            for i in range(50)
        ]

    swept, outcomes = await asyncio.gather(asyncio.gather(*(sweep(s) for s in sweepers)), claims())
    expired = await db.fetchval("SELECT count(*) FROM claim_history WHERE reason = 'expired'")
    assert expired == 1500
    assert sum(swept) <= 1500  # the rest were swept by the claim path, under the same lock
    assert await db.fetchval("SELECT count(DISTINCT claim_id) FROM claim_history") == 1500
    assert await db.fetchval("SELECT count(*) FROM claims") == outcomes.count(CLAIMED) == 50
    await assert_invariants(db)


async def test_redeem_racing_release_and_expiry_has_exactly_one_winner(
    make_store: StoreFactory, store: CouponStore, db: asyncpg.Connection[Any]
) -> None:
    await store.create_coupon(NewCoupon(name="Z", amount=200, hold_seconds=60))
    users = [f"u{i}" for i in range(200)]
    await db.execute(
        "INSERT INTO claims (coupon_name, user_id) SELECT 'Z', unnest($1::text[])", users
    )
    redeemer, sweeper = [await make_store() for _ in range(2)]
    releaser = (await engines_on(make_store, 1))[0]
    expiring = set(users[100:])

    async def redeem(user: str) -> str:
        try:
            await redeemer.redeem_claim(coupon_name="Z", user_id=user)
        except (ClaimNotFound, AlreadyRedeemed) as error:
            return error.code
        return "redeemed"

    async def release(user: str) -> str:
        try:
            await release_through(releaser, coupon_name="Z", user_id=user)
        except (ClaimNotFound, AlreadyRedeemed) as error:
            return error.code
        return "released"

    async def expire() -> None:
        await expire_holds(db, "Z", sorted(expiring))
        for _ in range(5):
            await sweeper.expire_holds()

    redeems, releases, _ = await asyncio.gather(
        asyncio.gather(*(redeem(u) for u in users)),
        asyncio.gather(*(release(u) for u in users[:100])),
        expire(),
    )
    for user, redeemed, released in zip(users, redeems, releases, strict=False):
        assert (redeemed == "redeemed") != (released == "released"), (user, redeemed, released)
        if redeemed == "redeemed":
            assert released == "already_redeemed"
    await sweeper.expire_holds()  # a sweep may have skipped the coupon a release held
    redeemed_now = await db.fetchval("SELECT count(*) FROM claims WHERE redeemed_at IS NOT NULL")
    ended = await db.fetchval("SELECT count(*) FROM claim_history")
    assert redeemed_now == redeems.count("redeemed")
    assert redeemed_now + ended == 200  # each claim: redeemed, or ended once
    assert await db.fetchval("SELECT count(*) FROM claims WHERE redeemed_at IS NULL") == 0
    await assert_invariants(db)


async def test_stock_returned_reaches_a_worker_that_saw_the_coupon_sold_out(
    make_store: StoreFactory, store: CouponStore, db: asyncpg.Connection[Any]
) -> None:
    await store.create_coupon(NewCoupon(name="HINT", amount=2, hold_seconds=60))
    engine = (await engines_on(make_store, 1))[0]
    for user in ["a", "b"]:
        await outcome_of(engine, coupon_name="HINT", user_id=user)
    assert await outcome_of(engine, coupon_name="HINT", user_id="c") is ClaimOutcome.SOLD_OUT
    # Released elsewhere (another instance): the hint must not answer sold_out.
    await release_through(TransactionPerClaim(store), coupon_name="HINT", user_id="a")
    assert await outcome_of(engine, coupon_name="HINT", user_id="c") is CLAIMED
    assert await outcome_of(engine, coupon_name="HINT", user_id="d") is ClaimOutcome.SOLD_OUT
    # Expired and not swept yet: the hint's read counts the due hold as returned.
    await expire_holds(db, "HINT", ["b"])
    assert await outcome_of(engine, coupon_name="HINT", user_id="d") is CLAIMED
    # Restocked.
    assert await outcome_of(engine, coupon_name="HINT", user_id="e") is ClaimOutcome.SOLD_OUT
    await store.change_coupon("HINT", CouponChange(amount=3))
    assert await outcome_of(engine, coupon_name="HINT", user_id="e") is CLAIMED
    # Paused while sold out: both lanes answer paused (paused wins over sold_out).
    await store.change_coupon("HINT", CouponChange(active=False))
    assert await outcome_of(engine, coupon_name="HINT", user_id="f") is ClaimOutcome.PAUSED
    assert await outcome_of(engine, coupon_name="HINT", user_id="e") is (
        ClaimOutcome.ALREADY_CLAIMED
    )
    await assert_invariants(db)


async def test_verify_finds_a_claim_recorded_as_ended_that_is_still_live(
    store: CouponStore, engine: BatchedClaims, db: asyncpg.Connection[Any]
) -> None:
    await store.create_coupon(NewCoupon(name="V", amount=2))
    await outcome_of(engine, coupon_name="V", user_id="a")
    await db.execute(
        "INSERT INTO claim_history (claim_id, coupon_id, coupon_name, user_id, claimed_at, reason)"
        " SELECT id, coupon_id, coupon_name, user_id, claimed_at, 'expired' FROM claims"
    )
    [violation] = await find_violations(db)
    assert (violation.coupon, violation.ended_but_live) == ("V", 1)
    assert "1 ended yet live" in violation.describe()
