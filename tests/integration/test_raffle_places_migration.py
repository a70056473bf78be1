"""A raffle drawn before places were derived (migration raffle_places_derived)
keeps every place: the migration marks the places the draw wrote, and the
places raffle_place derives afterwards are the ones the draw gave, entry by
entry."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from flashsale.storage.admin import create_database, drop_database
from flashsale.storage.migrations import load_migrations
from flashsale.storage.queries import admin_query, query
from tests.support.databases import DatabaseServer

ENTRIES = 12_345  # thirteen of the migration's marks (every 1,000 places)
# The places derived and compared: each mark's neighbours, the last one,
# and every 11th.
SAMPLE = [1, 2, 999, 1_000, 1_001, 1_002, 10_000, 10_001, ENTRIES]


async def test_places_written_by_an_earlier_draw_are_derived_the_same(
    database_server: DatabaseServer,
) -> None:
    url = await create_database(database_server.url, f"flashsale_m_{uuid.uuid4().hex[:12]}")
    try:
        written, derived = await places_across_the_migration(url)
    finally:
        await drop_database(database_server.url, url)
    assert sorted(written.values()) == list(range(1, ENTRIES + 1))
    assert derived == {user: place for user, place in written.items() if user in derived}
    assert set(SAMPLE) <= set(derived.values())


async def places_across_the_migration(url: str) -> tuple[dict[str, int], dict[str, int]]:
    """The migrations before raffle_places_derived, a raffle drawn by that
    version's steps (which wrote places), then the rest."""
    connection = await asyncpg.connect(url)
    try:
        migrations = load_migrations()
        derived = next(m.version for m in migrations if m.name == "raffle_places_derived")
        for migration in migrations[: derived - 1]:
            await connection.execute(migration.sql)
        await draw_a_raffle(connection)
        written = await places(connection, "SELECT e.user_id, e.place FROM raffle_entries AS e")
        for migration in migrations[derived - 1 :]:
            await connection.execute(migration.sql)
        return written, await places(
            connection,
            "SELECT e.user_id, raffle_place(e.coupon_id, e.ticket, e.entrant) AS place "
            "FROM raffle_entries AS e WHERE e.user_id = ANY($1::text[])",
            [user for user, place in written.items() if place in SAMPLE or place % 11 == 0],
        )
    finally:
        await connection.close()


async def draw_a_raffle(connection: asyncpg.Connection[asyncpg.Record]) -> None:
    draw_at = datetime.now(UTC) + timedelta(hours=1)
    seed = bytes(range(32))
    await connection.execute(
        query("create_coupon"), "OLD", 100, None, None, None, "raffle", draw_at, seed
    )
    await connection.execute(admin_query("seed_raffle_entries"), "OLD", ENTRIES)
    await connection.execute(admin_query("make_draw_due"), "OLD")
    [coupon_id] = [row["coupon_id"] for row in await connection.fetch(query("start_draws"), 1)]
    while await connection.fetchval(query("draw_step"), coupon_id, 1_000) is False:
        pass


async def places(
    connection: asyncpg.Connection[asyncpg.Record], sql: str, *arguments: object
) -> dict[str, int]:
    return {row["user_id"]: row["place"] for row in await connection.fetch(sql, *arguments)}
