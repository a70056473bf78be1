"""The many-instance topology of tests/cluster: HAProxy -> instances of
``flashsale serve`` -> PgBouncer (transaction mode), from Debian's packages
and deploy/'s configuration files (tests/support/topology.py)."""

from __future__ import annotations

import shutil
import signal
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from flashsale.bench.server import RunningServer
from tests.support.servers import serve
from tests.support.topology import BEHIND_PGBOUNCER, HAProxy, PgBouncer

INSTANCES = 3


def require(binary: str, package: str) -> None:
    if shutil.which(binary) is None and shutil.which(binary, path="/usr/sbin:/sbin") is None:
        pytest.skip(f"{binary} not installed: apt-get install {package}")


@dataclass
class Cluster:
    pgbouncer: PgBouncer
    instances: list[RunningServer]
    haproxy: HAProxy | None
    pooled_url: str  # the test's database through PgBouncer

    @property
    def base_url(self) -> str:
        assert self.haproxy is not None
        return self.haproxy.base_url


def start_instances(
    pooled_url: str, folder: Path, count: int, env: Mapping[str, str] | None = None
) -> list[RunningServer]:
    """``count`` instances at once, each in its own process group (a kill -9
    of the group takes Granian's main process and its worker)."""
    environment = {**BEHIND_PGBOUNCER, **(env or {})}
    folder.mkdir(parents=True, exist_ok=True)

    def one(number: int) -> RunningServer:
        return serve(
            pooled_url,
            folder / f"instance-{number}.log",
            workers=1,
            env=environment,
            new_session=True,
        )

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(1, count + 1)))


def stop_all(instances: list[RunningServer]) -> None:
    for instance in instances:
        if instance.process.poll() is None:
            instance.stop(signal.SIGTERM)
