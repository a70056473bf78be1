"""Preparing a database server for the service: create the database if it is
missing, then bring its schema up to date."""

from __future__ import annotations

import asyncio
from urllib.parse import unquote, urlsplit

import asyncpg

from flashsale.storage.migrations import Migration, apply_migrations

_CREATE_ATTEMPTS = 5
_CREATE_RACES = (
    asyncpg.DuplicateDatabaseError,
    asyncpg.UniqueViolationError,  # two CREATE DATABASE racing on the catalog
    asyncpg.ObjectInUseError,  # "source database template1 is being accessed"
)


async def ensure_database(dsn: str) -> None:
    """Create the database named in ``dsn`` when the server has no such database."""
    try:
        connection = await asyncpg.connect(dsn)
    except asyncpg.InvalidCatalogNameError:
        pass
    else:
        await connection.close()
        return
    name = _database_name(dsn)
    admin = await asyncpg.connect(dsn, database="postgres")
    try:
        for attempt in range(_CREATE_ATTEMPTS):
            try:
                await admin.execute(f'CREATE DATABASE "{_quote_identifier(name)}"')
                return
            except _CREATE_RACES:
                # Another process is creating it, or copying template1 at the
                # same moment; whichever way, check and try again.
                exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
                if exists:
                    return
                await asyncio.sleep(0.1 * (attempt + 1))
        raise RuntimeError(f"could not create database {name!r}")
    finally:
        await admin.close()


async def migrate(dsn: str) -> list[Migration]:
    await ensure_database(dsn)
    connection = await asyncpg.connect(dsn)
    try:
        return await apply_migrations(connection)
    finally:
        await connection.close()


def _database_name(dsn: str) -> str:
    path = urlsplit(dsn).path.lstrip("/")
    return unquote(path) or "postgres"


def _quote_identifier(name: str) -> str:
    return name.replace('"', '""')
