"""What the bench drives. The product's own is ``direct``: one instance of
the service straight to PostgreSQL (the server given by --database-url, or
a throwaway embedded one). Arrangements with PgBouncer, HAProxy or Patroni
are development tools that hand the runner their own ``Topology``
(tests/support/bench.py)."""

from __future__ import annotations

import atexit
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from flashsale.bench.cpu import Parties, postmaster_pid
from flashsale.bench.server import RunningServer, start_server
from flashsale.storage.embedded import start_embedded


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """One instance of the service as the bench runs it."""

    database_url: str
    workers: int
    strategy: str
    log_path: Path
    env: Mapping[str, str] = field(default_factory=dict)  # e.g. DB_STATEMENT_CACHE_SIZE


@dataclass(frozen=True, slots=True)
class Deployment:
    base_url: str  # where wrk sends its requests
    parties: Parties


@dataclass(frozen=True, slots=True)
class DatabaseServer:
    url: str
    postmaster: int | None  # known for the embedded server: its CPU is measured


# (config, the database server's postmaster, a scratch folder) -> the running arrangement
Deploy = Callable[[ServerConfig, int | None, Path], AbstractContextManager[Deployment]]
# (--database-url (None: none given), the connections the service's pools may
# hold) -> a server to create bench databases on
DatabaseSource = Callable[[str | None, int], AbstractContextManager[DatabaseServer]]


@dataclass(frozen=True, slots=True)
class Topology:
    name: str
    deploy: Deploy
    database_server: DatabaseSource
    instances: int = 1  # of the service


@contextmanager
def deploy_direct(
    config: ServerConfig, postmaster: int | None, workdir: Path
) -> Iterator[Deployment]:
    """One instance; stopped gracefully when the block ends."""
    with ExitStack() as stack:
        server = start_instance(stack, config)
        yield Deployment(server.base_url, Parties((server.process.pid,), postmaster))


def start_instance(stack: ExitStack, config: ServerConfig) -> RunningServer:
    """An instance of the service, stopped when ``stack`` closes."""
    env = {"CLAIM_STRATEGY": config.strategy, "FLASHSALE_BENCH_ROUTES": "true", **config.env}
    server = start_server(config.database_url, config.log_path, workers=config.workers, env=env)
    stack.callback(stop, server)
    return server


def stop(server: RunningServer) -> None:
    """Gracefully (the claims in flight commit), killed if it hangs."""
    try:
        server.stop()
    except subprocess.TimeoutExpired:
        server.kill()


@contextmanager
def given_or_embedded(url: str | None, connections: int = 0) -> Iterator[DatabaseServer]:
    """The server at ``url``, or a throwaway embedded PostgreSQL sized for
    ``connections`` (the service's start-up refuses pools that do not fit)."""
    if url:
        yield DatabaseServer(url, None)
        return
    # Not in workdir: the server stops only when this process exits (atexit),
    # and its folder must outlive it; removed after it (atexit runs in reverse).
    folder = Path(tempfile.mkdtemp(prefix="flashsale-bench-pg-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    embedded = start_embedded(folder, cleanup="delete", connections=connections)
    yield DatabaseServer(embedded, postmaster_pid(folder / "pgdata"))


DIRECT = Topology("direct", deploy_direct, given_or_embedded)
