"""The many-instance topology from Debian's packages on loopback ports:
HAProxy -> instances of ``flashsale serve`` -> PgBouncer (transaction mode)
-> the suite's PostgreSQL, with deploy/'s configuration files."""

from __future__ import annotations

import shutil
import signal
import tempfile
from collections.abc import AsyncIterator, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from flashsale.bench.topology import HAProxy, PgBouncer, server_address
from tests.support import LiveServer, free_port, start_server

INSTANCES = 3
# What every instance behind a PgBouncer 1.18 in transaction mode needs.
BEHIND_PGBOUNCER = {"DB_STATEMENT_CACHE_SIZE": "0"}


def _require(binary: str, package: str) -> None:
    if shutil.which(binary) is None and shutil.which(binary, path="/usr/sbin:/sbin") is None:
        pytest.skip(f"{binary} not installed: apt-get install {package}")


@dataclass
class Cluster:
    pgbouncer: PgBouncer
    instances: list[LiveServer]
    haproxy: HAProxy | None
    pooled_url: str  # the test's database through PgBouncer

    @property
    def base_url(self) -> str:
        assert self.haproxy is not None
        return self.haproxy.base_url


@pytest.fixture
def folder() -> Iterator[Path]:
    # Not under tmp_path: PgBouncer runs as another account (it refuses root)
    # and must read its configuration, and pytest makes tmp_path root-only.
    path = Path(tempfile.mkdtemp(prefix="flashsale-cluster-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def pgbouncer(database: str, folder: Path) -> Iterator[PgBouncer]:
    _require("pgbouncer", "pgbouncer")
    bouncer = PgBouncer(folder / "pgbouncer", server_address(database), free_port())
    bouncer.start()
    yield bouncer
    bouncer.stop()


def start_instances(
    pooled_url: str, folder: Path, count: int, env: Mapping[str, str] | None = None
) -> list[LiveServer]:
    """``count`` instances at once, each in its own process group (a kill -9
    of the group takes Granian's main process and its worker)."""
    environment = {**BEHIND_PGBOUNCER, **(env or {})}
    folder.mkdir(parents=True, exist_ok=True)

    def one(number: int) -> LiveServer:
        return start_server(
            pooled_url,
            folder / f"instance-{number}.log",
            workers=1,
            env=environment,
            new_session=True,
        )

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(1, count + 1)))


def stop_all(instances: list[LiveServer]) -> None:
    for instance in instances:
        if instance.process.poll() is None:
            instance.stop(signal.SIGTERM)


@pytest.fixture
async def cluster(pgbouncer: PgBouncer, database: str, folder: Path) -> AsyncIterator[Cluster]:
    """HAProxy in front of three instances, all through one PgBouncer."""
    _require("haproxy", "haproxy")
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
