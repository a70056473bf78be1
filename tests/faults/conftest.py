"""Fixtures for fault tests: each test gets a PostgreSQL of its own, so it may
stop or crash it without touching the suite's shared server."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from flashsale.storage.admin import database_url
from flashsale.storage.database import migrate
from tests.support.own_postgres import OwnPostgres


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    # Not under tmp_path: concurrent pytest runs reset the permissions of
    # /tmp/pytest-of-<user>, which the server's own account must traverse.
    directory = Path(tempfile.mkdtemp(prefix="flashsale-faults-"))
    server = OwnPostgres.start_in(directory)
    try:
        yield server
    finally:
        # The wheel's clean-up only stops the process it started itself, and
        # a test may have replaced that one.
        if server.is_running():
            server.stop("immediate")
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
async def own_database(own_postgres: OwnPostgres) -> str:
    """URL of a migrated database on the test's own server."""
    url = database_url(own_postgres.url, "flashsale")
    await migrate(url)
    return url


@pytest.fixture
async def own_db(own_database: str) -> AsyncIterator[asyncpg.Connection[asyncpg.Record]]:
    connection = await asyncpg.connect(own_database)
    yield connection
    await connection.close()
