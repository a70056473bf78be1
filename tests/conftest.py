"""Fixtures: a real PostgreSQL for the whole run (embedded and throwaway, or
TEST_DATABASE_URL), a migrated template, a fresh database per test, the app
in process, and ``flashsale serve`` as a child process."""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import pytest

from flashsale.bench.server import RunningServer
from flashsale.storage.embedded import start_embedded
from tests.support.api import Client, in_process_client
from tests.support.databases import DatabaseServer
from tests.support.network import network  # noqa: F401 - the test resolver and connect guard
from tests.support.receiver import TEST_SECRET, Receiver
from tests.support.servers import serve

if TYPE_CHECKING:
    Connection = asyncpg.Connection[asyncpg.Record]


@pytest.fixture(scope="session")
async def database_server() -> AsyncIterator[DatabaseServer]:
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


@pytest.fixture(scope="module")
async def module_database(database_server: DatabaseServer) -> AsyncIterator[str]:
    """One fresh migrated database for a module's tests (and its server)."""
    url = await database_server.create_database()
    yield url
    await database_server.drop_database(url)


@pytest.fixture
async def db(database: str) -> AsyncIterator[Connection]:
    connection = await asyncpg.connect(database)
    yield connection
    await connection.close()


@pytest.fixture
async def client(database: str) -> AsyncIterator[Client]:
    """The app in process over ASGI (the same HTTP semantics, no socket)."""
    async with in_process_client(database) as test_client:
        yield test_client


@pytest.fixture
def live_server(database: str, tmp_path: Path) -> Iterator[RunningServer]:
    """``flashsale serve`` in a child process with two workers."""
    server = serve(database, tmp_path / "server.log", workers=2)
    yield server
    server.stop()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A webhook endpoint on loopback that verifies with TEST_SECRET."""
    endpoint = Receiver(TEST_SECRET)
    await endpoint.start()
    yield endpoint
    await endpoint.stop()
