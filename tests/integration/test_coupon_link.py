"""A claim's link to its coupon (coupon_id and coupon_name), kept by the
triggers of migration 0015 instead of a foreign key: whoever writes the
tables, a claim names an existing coupon by both, follows its rename and
goes with its delete, also when the writers race."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest

from flashsale.service.ports import NewCoupon
from flashsale.storage.store import CouponStore
from tests.support.invariants import assert_invariants

if TYPE_CHECKING:
    Connection = asyncpg.Connection[Any]


async def coupon_id(db: Connection, name: str) -> int:
    found: int = await db.fetchval("SELECT id FROM coupons WHERE name = $1", name)
    return found


async def two_coupons(store: CouponStore) -> None:
    """A (claimed by u1 and u2) and B (by u1), 5 units each."""
    await store.create_coupon(NewCoupon(name="A", amount=5))
    await store.create_coupon(NewCoupon(name="B", amount=5))
    await store.decide_batch("A", ["u1", "u2"])
    await store.decide_batch("B", ["u1"])


async def test_a_claim_must_name_its_coupon_by_id_and_name(
    store: CouponStore, db: Connection
) -> None:
    await two_coupons(store)
    a = await coupon_id(db, "A")
    for pair in [(a, "B"), (a + 1000, "A")]:
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await db.execute(
                "INSERT INTO claims (coupon_id, coupon_name, user_id) VALUES ($1, $2, 'u9')", *pair
            )
    # One stray row fails its whole statement: the good rows are not kept either.
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await db.execute(
            "INSERT INTO claims (coupon_id, coupon_name, user_id)"
            " VALUES ($1, 'A', 'ok'), ($1, 'B', 'stray')",
            a,
        )
    assert await db.fetchval("SELECT count(*) FROM claims") == 3
    assert await db.fetchval("SELECT sum(remaining_amount) FROM coupons") == 7
    await assert_invariants(db)


async def test_a_deleted_coupon_takes_its_claims_with_it(
    store: CouponStore, db: Connection
) -> None:
    await two_coupons(store)
    await db.execute("DELETE FROM coupons WHERE name = 'A'")
    assert await db.fetch("SELECT coupon_name, user_id FROM claims") == [("B", "u1")]
    reasons = await db.fetch("SELECT user_id, reason FROM claim_history ORDER BY user_id")
    assert reasons == [("u1", "deleted"), ("u2", "deleted")]
    await assert_invariants(db)


async def test_a_renamed_coupon_renames_its_claims_and_nothing_else_can(
    store: CouponStore, db: Connection
) -> None:
    await two_coupons(store)
    await db.execute("UPDATE coupons SET name = 'A2' WHERE name = 'A'")
    names = await db.fetch("SELECT coupon_name, user_id FROM claims ORDER BY id")
    assert names == [("A2", "u1"), ("A2", "u2"), ("B", "u1")]
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await db.execute("UPDATE claims SET coupon_name = 'B' WHERE user_id = 'u1'")
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await db.execute("UPDATE coupons SET id = DEFAULT WHERE name = 'A2'")
    with pytest.raises(asyncpg.RestrictViolationError):
        await db.execute("UPDATE claims SET user_id = 'u3' WHERE coupon_name = 'B'")
    await store.decide_batch("A2", ["u3"])
    await assert_invariants(db)


async def test_truncating_coupons_truncates_their_claims(
    store: CouponStore, db: Connection
) -> None:
    await store.create_coupon(NewCoupon(name="A", amount=5))
    await store.decide_batch("A", ["u1"])
    await db.execute("TRUNCATE coupons")
    assert await db.fetchval("SELECT count(*) FROM claims") == 0


async def test_a_claim_inserted_while_its_coupon_is_deleted_fails(
    store: CouponStore, db: Connection, database: str
) -> None:
    """The deleter commits first: the insert, which waited for the coupon's
    row lock, finds no coupon and fails, leaving no orphan."""
    await store.create_coupon(NewCoupon(name="A", amount=5))
    a = await coupon_id(db, "A")
    deleter = await asyncpg.connect(database)
    try:
        deleting = deleter.transaction()
        await deleting.start()
        await deleter.execute("DELETE FROM coupons WHERE name = 'A'")
        insert = asyncio.create_task(
            db.execute(
                "INSERT INTO claims (coupon_id, coupon_name, user_id) VALUES ($1, 'A', 'u')", a
            )
        )
        await asyncio.sleep(0.3)
        assert not insert.done()  # waiting for the deleter's lock on the coupon row
        await deleting.commit()
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await insert
    finally:
        await deleter.close()
    assert await db.fetchval("SELECT count(*) FROM claims") == 0


async def test_a_coupon_deleted_while_a_claim_is_inserted_takes_that_claim(
    store: CouponStore, db: Connection, database: str
) -> None:
    """The inserter commits first: the delete, which waited for its lock,
    then deletes the claim too."""
    await store.create_coupon(NewCoupon(name="A", amount=5))
    inserter = await asyncpg.connect(database)
    try:
        inserting = inserter.transaction()
        await inserting.start()
        await inserter.execute("INSERT INTO claims (user_id, coupon_name) VALUES ('u', 'A')")
        delete = asyncio.create_task(db.execute("DELETE FROM coupons WHERE name = 'A'"))
        await asyncio.sleep(0.3)
        assert not delete.done()
        await inserting.commit()
        await delete
    finally:
        await inserter.close()
    assert await db.fetchval("SELECT count(*) FROM claims") == 0
    assert await db.fetchval("SELECT reason FROM claim_history") == "deleted"
