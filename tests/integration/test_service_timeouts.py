"""The service's timeouts are its own sessions' (migration 0016): its pools'
connections carry statement_timeout, lock_timeout and
idle_in_transaction_session_timeout, while an operator's session as the
same role, after the service started, has PostgreSQL's defaults, and so
can run a bulk import or build an index by hand. (Behind PgBouncer:
tests/cluster/test_pooled_timeouts.py.)"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from flashsale.config import load_settings
from flashsale.storage import admin
from flashsale.storage.database import migrate
from flashsale.storage.pool import Connection, create_pool
from flashsale.storage.queries import query
from flashsale.storage.session_defaults import store_service_timeouts
from tests.support.databases import DatabaseServer, migrated_to

POSTGRESQL_DEFAULTS = ("0", "0", "0")


async def timeouts_of(connection: asyncpg.Connection[Any] | Connection) -> tuple[str, ...]:
    row = await connection.fetchrow(query("session_timeouts"))
    assert row is not None
    return tuple(row.values())


async def test_the_service_sessions_have_its_timeouts_and_an_operator_has_the_defaults(
    database: str,
) -> None:
    settings = load_settings({"DATABASE_URL": database, "DB_STATEMENT_TIMEOUT": "3"})
    await store_service_timeouts(database, settings)  # what start-up does
    pool = await create_pool(settings)
    try:
        async with pool.acquire() as first, pool.acquire() as second:
            assert await timeouts_of(first) == ("3s", "3s", "6s")
            assert await timeouts_of(second) == ("3s", "3s", "6s")
        operator = await asyncpg.connect(database)  # psql as the same role
        try:
            assert await timeouts_of(operator) == POSTGRESQL_DEFAULTS
            # A statement longer than the service's bound runs to its end.
            await operator.execute("SELECT pg_sleep(3.5)")
        finally:
            await operator.close()
    finally:
        await pool.close()


async def test_a_database_that_0005_gave_role_timeouts_loses_them_on_upgrade(
    database_server: DatabaseServer,
) -> None:
    """0005 stored the timeouts as the role's defaults in the database: the
    upgrade resets them, so the operator's sessions get the defaults back."""
    url = await admin.create_database(database_server.url, f"flashsale_u_{uuid.uuid4().hex[:12]}")
    try:
        await migrated_to(url, 15)
        before = await asyncpg.connect(url)
        try:
            await before.execute("SELECT store_session_defaults(5000, 5000, 10000)")
        finally:
            await before.close()
        await migrate(url)
        operator = await asyncpg.connect(url)
        try:
            assert await timeouts_of(operator) == POSTGRESQL_DEFAULTS
            stored = await operator.fetchval(
                "SELECT count(*) FROM pg_db_role_setting AS s"
                " WHERE s.setdatabase = (SELECT oid FROM pg_database"
                " WHERE datname = current_database())"
            )
            assert stored == 0
        finally:
            await operator.close()
    finally:
        await admin.drop_database(database_server.url, url)
