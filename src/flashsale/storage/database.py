"""Preparing a database server for the service: create the database if it is
missing, then bring its schema up to date."""

from __future__ import annotations

from contextlib import suppress
from urllib.parse import unquote, urlsplit

import asyncpg

from flashsale.storage.migrations import Migration, apply_migrations


async def ensure_database(dsn: str) -> None:
    """Create the database named in ``dsn`` when the server has no such database."""
    try:
        connection = await asyncpg.connect(dsn)
    except asyncpg.InvalidCatalogNameError:
        pass
    else:
        await connection.close()
        return
    admin = await asyncpg.connect(dsn, database="postgres")
    try:
        # Another process may create it first; either way it exists afterwards.
        with suppress(asyncpg.DuplicateDatabaseError):
            await admin.execute(f'CREATE DATABASE "{_quote_identifier(_database_name(dsn))}"')
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
