"""Numbered, forward-only SQL migrations, applied once under an advisory lock
so that several processes starting together never race."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.resources import files

import asyncpg

from flashsale.storage.queries import quote_identifier, startup_query
from flashsale.storage.session_defaults import Timeouts, apply_timeouts

# Any constant shared by every flashsale process; pg_advisory_xact_lock takes a bigint.
MIGRATION_LOCK_KEY = 0x666C617368  # "flash"
_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# "ADD CONSTRAINT name ... NOT VALID;": validated after the commit.
_NOT_VALID = re.compile(r"\bADD CONSTRAINT\s+(\w+)\b[^;]*\bNOT VALID\s*;", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations() -> list[Migration]:
    folder = files("flashsale.storage").joinpath("migrations")
    migrations = []
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE_NAME.match(entry.name)
        if match is None:
            raise ValueError(f"migration file {entry.name!r} is not named NNNN_name.sql")
        migrations.append(Migration(int(match[1]), match[2], entry.read_text()))
    migrations.sort(key=lambda m: m.version)
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migration versions must run 1..n without gaps, got {versions}")
    return migrations


async def apply_migrations(
    connection: asyncpg.Connection[asyncpg.Record], timeouts: Timeouts | None = None
) -> list[Migration]:
    """Apply what is missing; returns the migrations this call applied.

    One transaction under a transaction-level advisory lock: it holds behind
    PgBouncer in transaction mode, where consecutive transactions of one
    client may run on different server connections (a session-level lock
    would be taken on one and "released" on another). All pending migrations
    commit together or not at all; a process that waited for the lock sees
    the versions the first one recorded and applies nothing. ``timeouts``:
    the service's, which the server connection keeps afterwards."""
    async with connection.transaction():
        await connection.execute(startup_query("unbounded_transaction"))
        await connection.execute(startup_query("migration_lock"), MIGRATION_LOCK_KEY)
        await connection.execute(startup_query("create_schema_migrations"))
        rows = await connection.fetch(startup_query("applied_migrations"))
        done = {row["version"] for row in rows}
        applied = [m for m in load_migrations() if m.version not in done]
        for migration in applied:
            await connection.execute(migration.sql)
            await connection.execute(
                startup_query("record_migration"), migration.version, migration.name
            )
        if timeouts is not None:
            # Last, after the SET LOCALs: a session-level value outlives the
            # COMMIT, so the server connection a pooler keeps for other
            # clients has the service's timeouts even when it was opened
            # before the first start stored them for connect_query.
            await apply_timeouts(connection, timeouts)
    await validate_constraints(connection)
    return applied


async def validate_constraints(connection: asyncpg.Connection[asyncpg.Record]) -> None:
    """Validate what a migration added NOT VALID, each constraint in a
    transaction of its own, after the migrations committed: VALIDATE holds
    only a lock that writers pass (migrations/0016 says why not inside the
    migration). Runs on every start while one is left, so a start that died
    after the commit is made good by the next; a constraint another process
    validated meanwhile costs one lock, no scan."""
    added = sorted({name for m in load_migrations() for name in _NOT_VALID.findall(m.sql)})
    for row in await connection.fetch(startup_query("unvalidated_constraints"), added):
        validate = startup_query("validate_constraint").format(
            table=quote_identifier(row["table_name"]),
            constraint=quote_identifier(row["constraint_name"]),
        )
        async with connection.transaction():
            await connection.execute(startup_query("unbounded_transaction"))
            await connection.execute(validate)
