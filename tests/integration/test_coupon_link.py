"""A claim's link to its coupon (coupon_id and coupon_name): the declared
foreign key claims_coupon_fkey (0016), as every tool that reads constraints
sees it. Whoever writes the tables, a claim names an existing coupon by
both, follows its rename and goes with its delete, also when the writers
race; an operator's TRUNCATE and DELETE work as PostgreSQL documents them."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest

from flashsale.service.ports import NewCoupon
from flashsale.storage import admin
from flashsale.storage.database import migrate
from flashsale.storage.store import CouponStore
from tests.support.databases import DatabaseServer, migrated_to
from tests.support.invariants import assert_invariants
from tests.support.locks import wait_until_blocked
from tests.support.postgres_tools import newest_tool

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


async def test_claims_declare_their_link_to_coupons(db: Connection) -> None:
    """What \\d claims, pg_dump and schema browsers read."""
    row = await db.fetchrow(
        "SELECT pg_get_constraintdef(oid) AS definition, convalidated FROM pg_constraint"
        " WHERE conrelid = 'claims'::regclass AND contype = 'f'"
    )
    assert row is not None
    assert row["definition"] == (
        "FOREIGN KEY (coupon_id, coupon_name) REFERENCES coupons(id, name)"
        " ON UPDATE CASCADE ON DELETE CASCADE"
    )
    assert row["convalidated"]


def test_psql_shows_the_link(database: str) -> None:
    described = subprocess.run(
        [newest_tool("psql"), database, "--command", r"\d claims"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert "Foreign-key constraints:" in described
    assert (
        '"claims_coupon_fkey" FOREIGN KEY (coupon_id, coupon_name) REFERENCES coupons(id, name)'
        " ON UPDATE CASCADE ON DELETE CASCADE"
    ) in described


async def test_a_database_holding_claims_upgrades_to_a_validated_foreign_key(
    database_server: DatabaseServer,
) -> None:
    url = await admin.create_database(database_server.url, f"flashsale_u_{uuid.uuid4().hex[:12]}")
    try:
        await migrated_to(url, 15)
        await admin.seed_coupon(url, "OLD", 100, claims=40)
        applied = [m.version for m in await migrate(url)]
        assert applied[:1] == [16]  # then whatever later migrations exist
        db = await asyncpg.connect(url)
        try:
            await test_claims_declare_their_link_to_coupons(db)
            assert await db.fetchval("SELECT count(*) FROM claims") == 40
            await db.execute("TRUNCATE claims, coupons")
        finally:
            await db.close()
    finally:
        await admin.drop_database(database_server.url, url)


async def test_an_operators_own_not_valid_constraint_is_left_as_it_is(
    database: str, db: Connection
) -> None:
    await db.execute("ALTER TABLE coupons ADD CONSTRAINT ops_small CHECK (amount < 100) NOT VALID")
    await migrate(database)  # what every start runs
    assert not await db.fetchval(
        "SELECT convalidated FROM pg_constraint WHERE conname = 'ops_small'"
    )


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
    # A coupon with claims keeps its id: the cascade would move its claims.
    with pytest.raises(asyncpg.RestrictViolationError):
        await db.execute("UPDATE coupons SET id = DEFAULT WHERE name = 'A2'")
    with pytest.raises(asyncpg.RestrictViolationError):
        await db.execute("UPDATE claims SET user_id = 'u3' WHERE coupon_name = 'B'")
    await store.decide_batch("A2", ["u3"])
    await assert_invariants(db)


EMPTYING = [
    "TRUNCATE claims, coupons",
    "TRUNCATE coupons, claims",
    "TRUNCATE claims, coupons CASCADE",
    "TRUNCATE coupons, claims CASCADE",
    "TRUNCATE coupons CASCADE",
    "DELETE FROM coupons",
    # A reset that numbers coupons and claims from 1 again must take the
    # history keyed by those numbers with it (events, claim_history).
    "TRUNCATE coupons, claims, claim_history, events RESTART IDENTITY",
]


@pytest.mark.parametrize("command", EMPTYING)
async def test_an_operator_empties_both_tables_and_the_service_sells_again(
    store: CouponStore, db: Connection, command: str
) -> None:
    """What a test suite written against the original design does before
    every test: empty the tables, then create a coupon of the same name."""
    await two_coupons(store)
    await db.execute(command)
    assert await db.fetchval("SELECT count(*) FROM claims") == 0
    assert await db.fetchval("SELECT count(*) FROM coupons") == 0
    await store.create_coupon(NewCoupon(name="A", amount=2))
    result = await store.decide_batch("A", ["u1", "u2", "u3"])
    assert result.outcomes == ["claimed", "claimed", "sold_out"]
    await assert_invariants(db)


async def test_truncating_coupons_alone_is_refused_and_keeps_everything(
    store: CouponStore, db: Connection
) -> None:
    """PostgreSQL's rule for a referenced table: name claims too, or CASCADE."""
    await two_coupons(store)
    with pytest.raises(asyncpg.FeatureNotSupportedError) as refused:
        await db.execute("TRUNCATE coupons")
    assert "or use TRUNCATE ... CASCADE" in (refused.value.hint or "")
    assert await db.fetchval("SELECT count(*) FROM claims") == 3
    await assert_invariants(db)


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
        await wait_until_blocked(deleter)
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
        await wait_until_blocked(inserter)
        await inserting.commit()
        await delete
    finally:
        await inserter.close()
    assert await db.fetchval("SELECT count(*) FROM claims") == 0
    assert await db.fetchval("SELECT reason FROM claim_history") == "deleted"
