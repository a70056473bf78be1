"""Migrations: named NNNN_name.sql, applied once, safe when processes race."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg

from flashsale.storage.admin import database_url
from flashsale.storage.database import migrate
from flashsale.storage.migrations import load_migrations
from tests.support.databases import DatabaseServer


def test_migration_files_are_numbered_without_gaps() -> None:
    versions = [migration.version for migration in load_migrations()]
    assert versions == list(range(1, len(versions) + 1))


async def test_a_missing_database_is_created_and_migrated_once(
    database_server: DatabaseServer,
) -> None:
    url = database_url(database_server.url, f"flashsale_new_{uuid.uuid4().hex[:8]}")
    try:
        first = await migrate(url)
        assert [m.version for m in first] == [m.version for m in load_migrations()]
        assert await migrate(url) == []
        connection: asyncpg.Connection[Any] = await asyncpg.connect(url)
        try:
            tables = await connection.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            )
        finally:
            await connection.close()
        assert [t["tablename"] for t in tables] == [
            "claim_history",
            "claims",
            "coupons",
            "events",
            "idempotency_keys",
            "raffle_draw_marks",
            "raffle_draws",
            "raffle_entries",
            "raffle_seeds",
            "schema_migrations",
            "service_timeouts",
            "webhook_streams",
            "webhooks",
        ]
    finally:
        await database_server.drop_database(url)


async def test_processes_migrating_at_once_apply_each_migration_exactly_once(
    database_server: DatabaseServer,
) -> None:
    url = database_url(database_server.url, f"flashsale_race_{uuid.uuid4().hex[:8]}")
    await migrate(url)  # the database exists; now race on a fresh schema
    await database_server.drop_database(url)
    try:
        results = await asyncio.gather(*(migrate(url) for _ in range(4)))
        assert sum(len(applied) for applied in results) == len(load_migrations())
    finally:
        await database_server.drop_database(url)
