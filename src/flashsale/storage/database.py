"""Preparing a database server for the service: find the primary, create the
database if it is missing, then bring its schema up to date."""

from __future__ import annotations

import asyncio
from urllib.parse import unquote, urlsplit

import asyncpg

from flashsale.storage.migrations import Migration, apply_migrations
from flashsale.storage.primary import ADMIN_DATABASE, find_primary
from flashsale.storage.queries import quote_identifier, startup_query
from flashsale.storage.session_defaults import Timeouts

_CREATE_ATTEMPTS = 5
_CREATE_RACES = (
    asyncpg.DuplicateDatabaseError,
    asyncpg.UniqueViolationError,  # two CREATE DATABASE racing on the catalog
    asyncpg.ObjectInUseError,  # "source database template1 is being accessed"
)
# The admin database cannot be reached (no CONNECT privilege, or a pooler that
# serves only the service's database): then the service's database must exist.
_NO_ADMIN = (asyncpg.PostgresError, asyncpg.InterfaceError)
# asyncpg's default; 0 behind a transaction-mode pooler (see Settings).
DEFAULT_STATEMENT_CACHE_SIZE = 100


async def ensure_database(
    dsn: str, *, statement_cache_size: int = DEFAULT_STATEMENT_CACHE_SIZE
) -> None:
    """Create the database named in ``dsn`` when the server has no such database.

    Asked in the admin database's catalog rather than by trying to connect:
    through PgBouncer, a login to a database PostgreSQL does not have fails
    with a pooler error (not InvalidCatalogNameError) and holds the pool back
    for server_login_retry seconds."""
    try:
        admin = await asyncpg.connect(
            dsn, database=ADMIN_DATABASE, statement_cache_size=statement_cache_size
        )
    except _NO_ADMIN:
        return
    try:
        await _create_if_missing(admin, _database_name(dsn))
    finally:
        await admin.close()


async def _create_if_missing(admin: asyncpg.Connection[asyncpg.Record], name: str) -> None:
    create = startup_query("create_database").format(database=quote_identifier(name))
    for attempt in range(_CREATE_ATTEMPTS):
        if await admin.fetchval(startup_query("database_exists"), name):
            return
        try:
            await admin.execute(create)
            return
        except _CREATE_RACES:
            # Another process is creating it, or copying template1 at the
            # same moment; whichever way, check and try again.
            await asyncio.sleep(0.1 * (attempt + 1))
    raise RuntimeError(f"could not create database {name!r}")


async def migrate(
    dsn: str,
    *,
    statement_cache_size: int = DEFAULT_STATEMENT_CACHE_SIZE,
    timeouts: Timeouts | None = None,
) -> list[Migration]:
    """Every step on the primary (``dsn`` may list several hosts): create the
    database if missing, then apply the pending migrations (``timeouts``: the
    service's, for the connection they ran on)."""
    primary = await find_primary(dsn, statement_cache_size=statement_cache_size)
    await ensure_database(primary, statement_cache_size=statement_cache_size)
    connection = await asyncpg.connect(primary, statement_cache_size=statement_cache_size)
    try:
        return await apply_migrations(connection, timeouts)
    finally:
        await connection.close()


def _database_name(dsn: str) -> str:
    path = urlsplit(dsn).path.lstrip("/")
    return unquote(path) or "postgres"
