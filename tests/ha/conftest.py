"""Fixtures for the failover tests: a fresh Patroni cluster per test (they kill
its nodes), with the service's database created on the leader and visible on
every node before the service starts."""

from __future__ import annotations

import time
from collections.abc import Iterator

import asyncpg
import pytest

from tests.ha.cluster import DATABASE, Cluster, missing_packages, running_cluster


@pytest.fixture
def ha_cluster() -> Iterator[Cluster]:
    if missing := missing_packages():
        pytest.skip(f"needs the Debian packages {', '.join(missing)} (apt-get install)")
    with running_cluster() as cluster:
        yield cluster


@pytest.fixture
async def ha_database(ha_cluster: Cluster) -> str:
    """The multi-host URL of an empty `coupondb` that exists on every node.

    Created on the leader, then waited for on each replica: a database created
    through the multi-host URL may not have been replayed on a standby yet
    (start-up through such a URL is the many-instances issue's part)."""
    leader = ha_cluster.leader()
    assert leader is not None
    admin = await asyncpg.connect(leader.url("postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{DATABASE}"')
    finally:
        await admin.close()
    for node in ha_cluster.nodes:
        await _wait_for_database(node.url())
    return ha_cluster.multi_host_url


async def _wait_for_database(url: str, limit: float = 20) -> None:
    deadline = time.monotonic() + limit
    while True:
        try:
            connection = await asyncpg.connect(url)
        except asyncpg.InvalidCatalogNameError:
            if time.monotonic() > deadline:
                raise
        else:
            await connection.close()
            return
