"""A raffle's races on a real database, each checked in the database:
entries racing draw_at, two instances drawing at once, a crash in the middle
of a draw, returned units racing down the waitlist, a pause across draw_at,
and the SQL draw's order held against the public rule (draw_rule.py)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from flashsale import draw_rule
from flashsale.claims.batched import BatchedClaims
from flashsale.claims.ports import BatchResult, CouponPart
from flashsale.claims.transaction import TransactionPerClaim
from flashsale.domain import ClaimOutcome
from flashsale.service.draws import RAFFLES_PER_TICK, Drawer
from flashsale.service.ports import CouponChange, EntryView, NewCoupon
from flashsale.storage.draw_bench import seed_raffle
from flashsale.storage.reads import CouponReadStore
from flashsale.storage.store import CouponStore
from tests.support.holds import expire_holds
from tests.support.invariants import assert_invariants
from tests.support.stores import StoreFactory, outcome_of, release_through

SEED = bytes(range(32))


def raffle(name: str, amount: int, **fields: Any) -> NewCoupon:
    draw_at = datetime.now(UTC) + timedelta(hours=1)
    return NewCoupon(name, amount, allocation="raffle", draw_at=draw_at, seed=SEED, **fields)


async def make_due(db: asyncpg.Connection[Any], name: str, delay_ms: int = 0) -> None:
    """draw_at passes (now, or ``delay_ms`` from now by the database's clock)."""
    await db.execute(
        "UPDATE coupons SET draw_at = clock_timestamp() + make_interval(secs => $2 / 1000.0) "
        "WHERE name = $1",
        name,
        delay_ms,
    )


async def draw(store: CouponStore, chunk: int = 100) -> None:
    assert await Drawer(store, chunk=chunk).run(budget=120)


async def places(db: asyncpg.Connection[Any], name: str) -> list[str]:
    """The entrants in place order; every entrant placed exactly once: the
    places derived from the draw's marks are 1..N in the draw's order."""
    rows = await db.fetch(
        "SELECT e.user_id, raffle_place(e.coupon_id, e.ticket, e.entrant) AS place "
        "FROM raffle_entries AS e JOIN coupons AS c ON c.id = e.coupon_id "
        "WHERE c.name = $1 ORDER BY e.ticket, e.entrant",
        name,
    )
    assert [row["place"] for row in rows] == list(range(1, len(rows) + 1))
    return [row["user_id"] for row in rows]


async def assert_drawn_once(db: asyncpg.Connection[Any], name: str, amount: int) -> list[str]:
    """One draw: places 1..N, the first ``amount`` won (one claimed event
    each), the others one waitlisted event each, one raffle_drawn event."""
    order = await places(db, name)
    won = await db.fetch(
        "SELECT user_id FROM events WHERE coupon_name = $1 AND type = 'claimed' "
        "AND data->>'reason' = 'raffle_won'",
        name,
    )
    assert sorted(row["user_id"] for row in won) == sorted(order[:amount])
    waited = await db.fetch(
        "SELECT user_id, (data->>'place')::int AS place FROM events "
        "WHERE coupon_name = $1 AND type = 'waitlisted' ORDER BY seq",
        name,
    )
    assert [(row["user_id"], row["place"]) for row in waited] == [
        (user, place) for place, user in enumerate(order, start=1) if place > amount
    ]
    drawn = await db.fetchval(
        "SELECT count(*) FROM events WHERE coupon_name = $1 AND type = 'raffle_drawn'", name
    )
    assert drawn == 1
    await assert_invariants(db)
    return order


async def test_the_sql_draw_follows_the_public_rule(
    database: str, store: CouponStore, db: asyncpg.Connection[Any]
) -> None:
    for seed, entries in [(SEED, 500), (bytes(32), 300), (b"\xff" * 32, 77)]:
        name = f"R{entries}"
        await seed_raffle(database, name, 10, entries, seed)
        await make_due(db, name)
        await draw(store, chunk=37)  # steps that do not divide the entries
        users = [f"user-{n}" for n in range(1, entries + 1)]
        by_digest = {draw_rule.entrant_digest(user): user for user in users}
        expected = [by_digest[d] for d in draw_rule.draw_order(seed, list(by_digest))]
        assert await assert_drawn_once(db, name, 10) == expected


async def test_places_read_page_by_page_and_one_by_one_are_the_draws(
    database: str, store: CouponStore, read_store: CouponReadStore, db: asyncpg.Connection[Any]
) -> None:
    """Places are derived from the draw's marks (every 1,000 places and each
    step's first): pages that cross marks and single reads on either side of
    one give the public rule's places."""
    await seed_raffle(database, "R", 10, 2_345, SEED)
    await make_due(db, "R")
    await draw(store, chunk=700)
    users = [f"user-{n}" for n in range(1, 2_346)]
    by_digest = {draw_rule.entrant_digest(user): user for user in users}
    order = draw_rule.draw_order(SEED, list(by_digest))
    listed: list[tuple[bytes, int | None]] = []
    while page := await read_store.entries_page(
        "R", after=listed[-1][0] if listed else None, limit=333
    ):
        listed += [(row.entrant, row.place) for row in page]
    assert listed == [(digest, place) for place, digest in enumerate(order, start=1)]
    for place in [11, 700, 701, 1_000, 1_001, 1_401, 2_345]:  # 1..10 won: claims
        entry = await read_store.find_claim(coupon_name="R", user_id=by_digest[order[place - 1]])
        assert isinstance(entry, EntryView)
        assert (entry.status, entry.place) == ("waitlisted", place)


async def test_entries_racing_draw_at_are_in_the_draw_or_refused(
    make_store: StoreFactory, store: CouponStore, db: asyncpg.Connection[Any]
) -> None:
    await store.create_coupon(raffle("R", 5))
    await make_due(db, "R", delay_ms=300)
    engines = [BatchedClaims(await make_store(), max_batch=50, max_queue=10_000) for _ in range(2)]
    drawers = [Drawer(await make_store(), chunk=20) for _ in range(2)]
    decided: dict[str, ClaimOutcome] = {}

    async def enter(n: int) -> None:
        for i in range(10_000):  # until entries close, however fast they go
            user = f"u{n}-{i}"
            decided[user] = await outcome_of(engines[n % 2], coupon_name="R", user_id=user)
            if decided[user] is not ClaimOutcome.ENTERED:
                return

    asking = asyncio.Lock()  # one connection for both drawers' questions

    async def drawn() -> bool:
        async with asking:
            done: bool = await db.fetchval("SELECT drawn_at IS NOT NULL FROM coupons")
            return done

    async def keep_drawing(drawer: Drawer) -> None:
        while not await drawn():
            await drawer.run(budget=10)
            await asyncio.sleep(0.01)

    await asyncio.gather(*(enter(n) for n in range(10)), *map(keep_drawing, drawers))
    entered = {user for user, outcome in decided.items() if outcome is ClaimOutcome.ENTERED}
    assert set(await places(db, "R")) == entered
    assert set(decided.values()) <= {
        ClaimOutcome.ENTERED,
        ClaimOutcome.ENTRIES_CLOSED,
        ClaimOutcome.RAFFLE_DRAWN,
        ClaimOutcome.CLAIMED,  # after the draw, when fewer entered than there were units
    }
    await assert_drawn_once(db, "R", min(5, len(entered)))


async def test_two_instances_at_draw_at_draw_once(
    database: str, make_store: StoreFactory, db: asyncpg.Connection[Any]
) -> None:
    await seed_raffle(database, "R", 50, 3000, SEED)
    await make_due(db, "R")
    stores = [await make_store() for _ in range(4)]
    await asyncio.gather(*(draw(store, chunk=100) for store in stores))
    await assert_drawn_once(db, "R", 50)
    assert await db.fetchval("SELECT count(*) FROM raffle_draws") == 1


async def test_a_crash_mid_draw_resumes_and_nobody_wins_twice(
    database: str, make_store: StoreFactory, db: asyncpg.Connection[Any]
) -> None:
    await seed_raffle(database, "R", 150, 1000, SEED)
    await make_due(db, "R")
    first = await make_store()
    [coupon_id] = await first.start_draws(10)
    for _ in range(3):  # steps of 100: the winners straddle steps 1 and 2
        assert not await first.draw_step(coupon_id, 100)
    crashing = await asyncpg.connect(database)
    await crashing.execute("BEGIN")
    await crashing.fetchval("SELECT raffle_draw_step($1, 100)", coupon_id)
    # The worker dies with its step uncommitted: PostgreSQL rolls it back.
    await db.execute("SELECT pg_terminate_backend($1)", crashing.get_server_pid())
    await draw(await make_store(), chunk=100)
    await assert_drawn_once(db, "R", 150)
    assert not await db.fetchval(
        "SELECT count(*) > count(DISTINCT user_id) FROM events WHERE type = 'waitlisted'"
    )


async def test_returned_units_go_down_the_waitlist_once_each(
    database: str, make_store: StoreFactory, store: CouponStore, db: asyncpg.Connection[Any]
) -> None:
    await seed_raffle(database, "R", 20, 200, SEED)
    await db.execute("UPDATE coupons SET hold_seconds = 600 WHERE name = 'R'")
    await make_due(db, "R")
    await draw(store)
    order = await places(db, "R")
    engines = [BatchedClaims(await make_store(), max_batch=20, max_queue=10_000) for _ in range(2)]
    await expire_holds(db, "R", order[10:15])
    sweepers = [await make_store() for _ in range(2)]

    async def release(n: int) -> None:
        await release_through(engines[n % 2], coupon_name="R", user_id=order[n])

    async def others(n: int) -> ClaimOutcome:
        user = order[100 + n] if n % 2 else f"stranger-{n}"  # never reached
        return await outcome_of(engines[n % 2], coupon_name="R", user_id=user)

    restock = store.change_coupon("R", CouponChange(amount=25))
    refused = await asyncio.gather(
        *(release(n) for n in range(10)),
        *(sweeper.expire_holds() for sweeper in sweepers),
        restock,
        *(others(n) for n in range(40)),
    )
    assert set(refused[13:]) == {ClaimOutcome.RAFFLE_DRAWN}
    await store.expire_holds()
    holders = {row["user_id"] for row in await db.fetch("SELECT user_id FROM live_claims")}
    # 25 units: the 5 winners who kept theirs, then places 21..40 in place order.
    assert holders == set(order[15:20]) | set(order[20:40])
    body = await db.fetchrow("SELECT remaining_amount, waitlisted FROM coupon_state")
    assert body is not None
    assert (body["remaining_amount"], body["waitlisted"]) == (0, 160)
    promoted = await db.fetchval(
        "SELECT count(*) FROM events WHERE data->>'reason' = 'waitlist_promoted'"
    )
    assert promoted == 20
    await assert_invariants(db)


async def test_a_raffle_paused_across_draw_at_draws_when_resumed(
    engine: BatchedClaims, store: CouponStore, db: asyncpg.Connection[Any]
) -> None:
    await store.create_coupon(raffle("R", 2))
    for user in ("a", "b", "c"):
        assert await outcome_of(engine, coupon_name="R", user_id=user) is ClaimOutcome.ENTERED
    await store.change_coupon("R", CouponChange(active=False))
    await make_due(db, "R")
    await draw(store)
    assert await db.fetchval("SELECT count(*) FROM raffle_draws") == 0
    assert await db.fetchval("SELECT status FROM coupon_state") == "paused"
    assert await outcome_of(engine, coupon_name="R", user_id="d") is ClaimOutcome.PAUSED
    await store.change_coupon("R", CouponChange(active=True))
    assert await db.fetchval("SELECT status FROM coupon_state") == "drawing"
    assert await outcome_of(engine, coupon_name="R", user_id="d") is ClaimOutcome.ENTRIES_CLOSED
    await draw(store)
    assert sorted(await places(db, "R")) == ["a", "b", "c"]
    await assert_drawn_once(db, "R", 2)


async def test_a_raffle_resumed_after_its_sale_ended_is_drawn_with_no_winners(
    engine: BatchedClaims, store: CouponStore, db: asyncpg.Connection[Any]
) -> None:
    """The draw still places every entrant (anyone can check it), but no
    claim is granted at or after ends_at, at the draw or down the waitlist."""
    await store.create_coupon(raffle("R", 2))
    for user in ("a", "b", "c"):
        assert await outcome_of(engine, coupon_name="R", user_id=user) is ClaimOutcome.ENTERED
    await store.change_coupon("R", CouponChange(active=False))
    await make_due(db, "R")
    await db.execute("UPDATE coupons SET ends_at = clock_timestamp() + interval '1 millisecond'")
    await db.execute("SELECT pg_sleep_until(ends_at + interval '1 millisecond') FROM coupons")
    await store.change_coupon("R", CouponChange(active=True))
    await draw(store)
    await assert_drawn_once(db, "R", 0)
    assert await db.fetchval("SELECT count(*) FROM claims") == 0
    assert await db.fetchval("SELECT status FROM coupon_state") == "ended"


async def test_paused_raffles_past_draw_at_never_hold_back_a_due_one(
    engine: BatchedClaims, store: CouponStore, db: asyncpg.Connection[Any]
) -> None:
    # More paused raffles due than a tick takes, all due before the last one.
    for n in range(RAFFLES_PER_TICK + 2):
        await store.create_coupon(raffle(f"P{n}", 1))
        await store.change_coupon(f"P{n}", CouponChange(active=False))
        await make_due(db, f"P{n}")
    await store.create_coupon(raffle("LAST", 1))
    assert await outcome_of(engine, coupon_name="LAST", user_id="a") is ClaimOutcome.ENTERED
    await make_due(db, "LAST")
    await draw(store)
    assert await places(db, "LAST") == ["a"]
    await assert_drawn_once(db, "LAST", 1)
    assert await db.fetchval("SELECT count(*) FROM raffle_draws") == 1


async def test_a_raffles_part_of_a_batch_across_coupons_enters_its_users(
    store: CouponStore, db: asyncpg.Connection[Any]
) -> None:
    await store.create_coupon(raffle("R", 1))
    await store.create_coupon(NewCoupon("F", 10))
    parts = [CouponPart("R", ["a", "b", "a"]), CouponPart("F", ["a", "b"])]
    raffled, first_come = await store.decide_coupons(parts)
    assert isinstance(raffled, BatchResult)
    assert isinstance(first_come, BatchResult)
    assert raffled.outcomes == [ClaimOutcome.ENTERED] * 3
    assert first_come.outcomes == [ClaimOutcome.CLAIMED] * 2
    entries = await db.fetch("SELECT user_id FROM raffle_entries ORDER BY user_id")
    assert [row["user_id"] for row in entries] == ["a", "b"]
    assert await db.fetchval("SELECT count(*) FROM claims WHERE coupon_name = 'R'") == 0


async def test_the_transaction_strategy_enters_and_answers_the_draw_time(
    store: CouponStore, db: asyncpg.Connection[Any]
) -> None:
    await store.create_coupon(raffle("R", 1))
    engine = TransactionPerClaim(store)
    first = await engine.claim(coupon_name="R", user_id="a")
    again = await engine.claim(coupon_name="R", user_id="a")
    draw_at = await db.fetchval("SELECT draw_at FROM coupons")
    assert (first.outcome, first.expires_at) == (ClaimOutcome.ENTERED, draw_at)
    assert (again.outcome, again.expires_at) == (ClaimOutcome.ENTERED, draw_at)
    assert await db.fetchval("SELECT count(*) FROM raffle_entries") == 1
