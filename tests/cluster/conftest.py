"""The many-instance topology from Debian's packages on loopback ports:
HAProxy -> instances of ``flashsale serve`` -> PgBouncer (transaction mode)
-> the suite's PostgreSQL, with deploy/'s configuration files."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from flashsale.bench.server import free_port
from tests.support.cluster import INSTANCES, Cluster, require, start_instances, stop_all
from tests.support.topology import HAProxy, PgBouncer, server_address


@pytest.fixture
def folder() -> Iterator[Path]:
    # Not under tmp_path: PgBouncer runs as another account (it refuses root)
    # and must read its configuration, and pytest makes tmp_path root-only.
    path = Path(tempfile.mkdtemp(prefix="flashsale-cluster-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def pgbouncer(database: str, folder: Path) -> Iterator[PgBouncer]:
    require("pgbouncer", "pgbouncer")
    bouncer = PgBouncer(folder / "pgbouncer", server_address(database), free_port())
    bouncer.start()
    yield bouncer
    bouncer.stop()


@pytest.fixture
async def cluster(pgbouncer: PgBouncer, database: str, folder: Path) -> AsyncIterator[Cluster]:
    """HAProxy in front of three instances, all through one PgBouncer."""
    require("haproxy", "haproxy")
    pooled = pgbouncer.url_for(database)
    instances = start_instances(pooled, folder, INSTANCES)
    backends = [instance.base_url.removeprefix("http://") for instance in instances]
    haproxy = HAProxy(folder / "haproxy", free_port(), backends)
    try:
        haproxy.start()
        haproxy.wait_for_states({f"app{n}": "UP" for n in range(1, INSTANCES + 1)})
        yield Cluster(pgbouncer, instances, haproxy, pooled)
    finally:
        haproxy.stop()
        stop_all(instances)
