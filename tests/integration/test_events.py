"""The events feed on a real database: every kind of change writes its event
in the change's own transaction, numbered 1, 2, 3, ... per coupon; a change
rolled back leaves none; and the global feed never skips an event whose
transaction started earlier and committed later than events already read."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from flashsale.claims.ports import CouponPart
from flashsale.domain import Caller, CallerKind, IdempotencyKey, ReleaseOutcome
from flashsale.service.ports import FEED_START, CouponChange, Event, FeedPosition, NewCoupon
from flashsale.storage.events import EventStore
from flashsale.storage.store import CouponStore
from tests.support.events import (
    assert_gapless,
    changes_in_database,
    claim_changes,
    coupon_events,
    read_feed,
    read_feed_until,
)
from tests.support.holds import expire_holds
from tests.support.invariants import assert_invariants
from tests.support.stores import StoreFactory


async def test_every_kind_of_change_writes_its_event_with_a_gapless_seq(
    store: CouponStore, event_store: EventStore, db: asyncpg.Connection[Any]
) -> None:
    await store.create_coupon(NewCoupon(name="E", amount=300, hold_seconds=10))
    users = [f"u{i:03}" for i in range(250)]
    await store.decide_batch("E", users[:200])  # batches of many users
    await store.decide_batch("E", users[200:])
    await store.decide_batch("E", [], releases=["u000"])
    await store.redeem_claim(coupon_name="E", user_id="u001")
    await expire_holds(db, "E", ["u002", "u003"])
    assert await store.expire_holds() == 2
    await store.change_coupon("E", CouponChange(amount=400))
    await store.change_coupon("E", CouponChange(active=False))
    await store.change_coupon("E", CouponChange(active=True))
    ends = datetime.now(UTC) + timedelta(days=1)
    await store.change_coupon("E", CouponChange(ends_at=ends))
    await store.change_coupon("E", CouponChange(hold_seconds=30))
    await db.execute("INSERT INTO claims (user_id, coupon_name) VALUES ('op', 'E')")
    await db.execute("DELETE FROM claims WHERE coupon_name = 'E' AND user_id = 'u004'")

    events = await coupon_events(event_store, "E")
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert [(e.type, e.user_id) for e in events] == [
        ("coupon_created", None),
        *[("claimed", user) for user in users],
        ("released", "u000"),
        ("redeemed", "u001"),
        ("expired", "u002"),
        ("expired", "u003"),
        ("coupon_changed", None),
        ("coupon_changed", None),
        ("coupon_changed", None),
        ("coupon_changed", None),
        ("coupon_changed", None),
        ("claimed", "op"),
        ("released", "u004"),
    ]
    data = [e.data for e in events if e.data]
    assert data[0] == {
        "amount": 300,
        "remaining_amount": 300,
        "starts_at": None,
        "ends_at": None,
        "active": True,
        "hold_seconds": 10,
    }
    assert data[1:] == [
        {"reason": "released"},
        {"amount": 400, "remaining_amount": 400 - 247},
        {"active": False},
        {"active": True},
        {"ends_at": data[5]["ends_at"]},
        {"hold_seconds": 30},
        {"reason": "deleted"},  # an operator's DELETE, told apart from a release
    ]
    assert datetime.fromisoformat(data[5]["ends_at"]) == ends
    claimed_at = await db.fetchval("SELECT claimed_at FROM claims WHERE user_id = 'u010'")
    assert next(e.at for e in events if e.user_id == "u010") == claimed_at
    assert claim_changes(events) == await changes_in_database(db)
    assert await db.fetchval("SELECT event_seq FROM coupons WHERE name = 'E'") == len(events)
    await assert_invariants(db)


async def test_a_rolled_back_change_writes_no_event_and_leaves_no_gap(
    store: CouponStore, event_store: EventStore, db: asyncpg.Connection[Any]
) -> None:
    await store.create_coupon(NewCoupon(name="R", amount=5))
    transaction = db.transaction()
    await transaction.start()
    await db.execute("INSERT INTO claims (user_id, coupon_name) VALUES ('x', 'R')")
    await db.execute("UPDATE coupons SET active = false WHERE name = 'R'")
    await transaction.rollback()
    with pytest.raises(asyncpg.CheckViolationError):  # the restock's CHECK fails
        await db.execute("UPDATE coupons SET remaining_amount = 9 WHERE name = 'R'")
    await store.decide_batch("R", ["y"])

    events = await coupon_events(event_store, "R")
    assert [(e.seq, e.type, e.user_id) for e in events] == [
        (1, "coupon_created", None),
        (2, "claimed", "y"),
    ]


async def test_the_feed_never_skips_an_event_whose_transaction_commits_late(
    store: CouponStore, event_store: EventStore, database: str
) -> None:
    await store.create_coupon(NewCoupon(name="A", amount=10))
    await store.create_coupon(NewCoupon(name="B", amount=10))
    seen, start = await read_feed_until(event_store, lambda events: len(events) == 2)

    held = await asyncpg.connect(database)
    transaction = held.transaction()
    await transaction.start()
    await held.fetchrow("SELECT * FROM claim_many('A', ARRAY['early'])")
    held_xid = int(await held.fetchval("SELECT pg_current_xact_id()::text"))
    for i in range(3):  # later transactions, each committed
        await store.decide_batch("B", [f"late{i}"])
    late = [e for e in await coupon_events(event_store, "B") if e.type == "claimed"]
    assert [e.user_id for e in late] == ["late0", "late1", "late2"]
    assert all(e.xid > held_xid for e in late)

    # Committed, but behind the open transaction: the feed does not return them.
    held_back, stuck = await read_feed(event_store, start)
    assert all(e.xid < held_xid for e in held_back)
    assert [e for e in held_back if e.type == "claimed"] == []

    await transaction.commit()
    await held.close()
    rest, _ = await read_feed_until(event_store, lambda events: len(events) == 4, after=stuck)
    feed = seen + held_back + rest
    assert [(e.coupon_name, e.user_id) for e in feed if e.type == "claimed"] == [
        ("A", "early"),  # the transaction that started first comes first
        ("B", "late0"),
        ("B", "late1"),
        ("B", "late2"),
    ]
    assert len({e.event_id for e in feed}) == len(feed)  # nothing twice
    assert [e.position for e in feed] == sorted(e.position for e in feed)


async def redeem(store: CouponStore, coupon: str, user: str) -> None:
    await store.redeem_claim(coupon_name=coupon, user_id=user)


async def test_concurrent_writers_of_one_coupon_keep_its_seq_order_in_the_feed(
    make_store: StoreFactory, event_store: EventStore, db: asyncpg.Connection[Any]
) -> None:
    # Many transactions queue on the coupon's row lock at once: without the
    # raised xid (0009) about half of them got an xid older than the one
    # before them in the queue, and the feed showed their seq out of order.
    stores = [await make_store() for _ in range(4)]
    await stores[0].create_coupon(NewCoupon(name="O", amount=300, hold_seconds=60))
    await stores[0].create_coupon(NewCoupon(name="P", amount=300, hold_seconds=60))
    users = [f"u{i}" for i in range(120)]
    await asyncio.gather(stores[0].decide_batch("O", users), stores[1].decide_batch("P", users))
    await expire_holds(db, "P", users[80:])
    await asyncio.gather(
        *(stores[i % 4].decide_batch("O", [], releases=[u]) for i, u in enumerate(users[:40])),
        *(
            stores[i % 4].redeem_claim(coupon_name="O", user_id=u)
            for i, u in enumerate(users[40:80])
        ),
        *(stores[i % 4].redeem_claim(coupon_name="P", user_id=u) for i, u in enumerate(users[:40])),
        *(stores[i % 4].decide_batch("P", [f"n{i}"]) for i in range(20)),
        *(store.expire_holds() for store in stores),
    )
    total = await db.fetchval("SELECT count(*) FROM events")
    feed, _ = await read_feed_until(event_store, lambda events: len(events) == total)
    assert_gapless(feed)  # per coupon: 1, 2, 3, ... in feed order
    assert claim_changes(feed) == await changes_in_database(db)


async def test_the_feed_orders_transaction_ids_as_numbers(
    event_store: EventStore, db: asyncpg.Connection[Any]
) -> None:
    # xids cross a power of ten in any cluster's life (9 -> 10, 999 -> 1000):
    # sorted as text, a page would end before events it had not returned yet.
    await db.execute(
        "INSERT INTO events (xid, coupon_id, coupon_name, seq, type, at)"
        " SELECT x::text::xid8, 1, 'OLD', s, 'coupon_changed', now()"
        " FROM unnest(ARRAY[11, 8, 10, 9]) WITH ORDINALITY AS t(x, s)"
    )
    events, _ = await read_feed(event_store)
    assert [e.xid for e in events] == [8, 9, 10, 11]
    first, after = await read_feed_page(event_store, 2)
    rest, _ = await read_feed(event_store, after)
    assert [e.xid for e in first + rest] == [8, 9, 10, 11]


async def read_feed_page(event_store: EventStore, limit: int) -> tuple[list[Event], FeedPosition]:
    page = await event_store.events_page(after=FEED_START, limit=limit)
    return page, page[-1].position


OPERATOR = Caller(CallerKind.OPERATOR, name="ops-desk", address="10.0.0.1")
SHOP = Caller(CallerKind.BACKEND, name="shop")
NAMED = {"kind": "operator", "name": "ops-desk"}  # never the address


async def released_events(db: asyncpg.Connection[Any]) -> list[tuple[str, str, Any]]:
    rows = await db.fetch(
        "SELECT coupon_name, user_id, data FROM events WHERE type = 'released' ORDER BY id"
    )
    return [(row["coupon_name"], row["user_id"], json.loads(row["data"])) for row in rows]


async def test_releases_of_several_callers_in_one_statement_each_name_their_own(
    store: CouponStore, db: asyncpg.Connection[Any]
) -> None:
    await store.create_coupon(NewCoupon(name="C", amount=10))
    await store.create_coupon(NewCoupon(name="D", amount=10))
    await store.decide_batch("C", ["a", "b", "c", "d", "x", "y"])
    await store.decide_batch("D", ["e"])
    user = Caller(CallerKind.USER, subject="sub-9")
    # One claim_many: three callers' releases (a released twice: its first
    # release gave the unit back and names it), one without an actor.
    result = await store.decide_batch(
        "C", ["n"], ["a", "b", "c", "a"], release_actors=[OPERATOR, SHOP, None, user]
    )
    assert result.releases[:3] == [ReleaseOutcome.RELEASED] * 3
    # claim_many_keyed (a release key) and claim_many_new_keys (a claim key).
    key = IdempotencyKey("DELETE /api/coupons/{name}/claims/{user_id}", "r-1", b"d")
    await store.decide_batch("C", [], ["d"], release_keys=[key], release_actors=[user])
    claim_key = IdempotencyKey("POST /api/coupons/claim", "c-1", b"z")
    await store.decide_batch("C", ["z"], ["x"], [claim_key], release_actors=[SHOP])
    # claim_many_coupons: each part's own actors.
    parts = [CouponPart("C", ["w"], ["y"], [OPERATOR]), CouponPart("D", ["f"], ["e"], [SHOP])]
    await store.decide_coupons(parts)
    shop, subject = {"kind": "backend", "name": "shop"}, {"kind": "user", "subject": "sub-9"}
    assert await released_events(db) == [
        ("C", "a", {"reason": "released", "actor": NAMED}),
        ("C", "b", {"reason": "released", "actor": shop}),
        ("C", "c", {"reason": "released"}),
        ("C", "d", {"reason": "released", "actor": subject}),
        ("C", "x", {"reason": "released", "actor": shop}),
        ("C", "y", {"reason": "released", "actor": NAMED}),
        ("D", "e", {"reason": "released", "actor": shop}),
    ]
    # The setting lasts the DELETE only: an operator's own DELETE names nobody.
    await db.execute("DELETE FROM claims WHERE coupon_name = 'C' AND user_id = 'n'")
    assert (await released_events(db))[-1] == ("C", "n", {"reason": "deleted"})
