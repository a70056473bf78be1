"""Fixtures: a real PostgreSQL for the whole run (embedded and throwaway, or
TEST_DATABASE_URL), a migrated template, and a fresh database per test."""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from flashsale.config import load_settings
from flashsale.storage.embedded import start_embedded
from flashsale.storage.verify import find_violations
from flashsale.wiring import create_app
from tests.support import DatabaseServer, LiveServer, start_server

if TYPE_CHECKING:
    Connection = asyncpg.Connection[asyncpg.Record]


@pytest.fixture(scope="session")
async def database_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[DatabaseServer]:
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        # Not under pytest's basetemp: pytest makes that 0700 (root only), and
        # the embedded server runs as its own user when the suite runs as root.
        url = start_embedded(Path(tempfile.mkdtemp(prefix="flashsale-pg-")), cleanup="delete")
    server = DatabaseServer(url)
    await server.prepare_template()
    yield server
    await server.drop_database(server.template_url)


@pytest.fixture
async def database(database_server: DatabaseServer) -> AsyncIterator[str]:
    """URL of a fresh migrated database, dropped after the test."""
    url = await database_server.create_database()
    yield url
    await database_server.drop_database(url)


@pytest.fixture
async def db(database: str) -> AsyncIterator[Connection]:
    connection = await asyncpg.connect(database)
    yield connection
    await connection.close()


@pytest.fixture
async def client(database: str) -> AsyncIterator[AsyncTestClient[Litestar]]:
    """The app in-process over ASGI (the same HTTP semantics, no socket)."""
    settings = load_settings({"DATABASE_URL": database, "DB_POOL_MIN": "1"})
    async with AsyncTestClient(app=create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def live_server(database: str, tmp_path: Path) -> Iterator[LiveServer]:
    """``flashsale serve`` in a child process with two workers."""
    server = start_server(database, tmp_path / "server.log", workers=2)
    yield server
    server.stop()


async def assert_invariants(connection: Connection) -> None:
    violations = await find_violations(connection)
    assert violations == [], [v.describe() for v in violations]
