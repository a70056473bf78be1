"""What the bench drives, by topology: ``direct`` (one instance straight to
PostgreSQL), ``pgbouncer`` (one instance through PgBouncer in transaction
mode), ``cluster`` (HAProxy in front of N instances, all through PgBouncer),
``ha`` (one instance on a Patroni cluster in strict synchronous mode, through
the multi-host URL: every commit waits for the synchronous standby)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from flashsale.bench.cpu import Parties
from flashsale.bench.server import RunningServer, free_port, start_server
from flashsale.bench.topology import HAProxy, PgBouncer, server_address

TOPOLOGIES = ("direct", "pgbouncer", "cluster", "ha")
# Debian's PgBouncer 1.18 tracks no prepared statements in transaction mode.
BEHIND_PGBOUNCER = {"DB_STATEMENT_CACHE_SIZE": "0"}


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


@contextmanager
def deploy(
    topology: str, instances: int, config: ServerConfig, postmaster: int | None, workdir: Path
) -> Iterator[Deployment]:
    """Starts the topology; stops it (instances gracefully) when the block ends."""
    with ExitStack() as stack:
        if topology in ("direct", "ha"):  # ha: the database side is the difference
            server = _started(stack, config)
            yield Deployment(server.base_url, Parties((server.process.pid,), postmaster))
            return
        bouncer = PgBouncer(workdir / "pgbouncer", server_address(config.database_url), free_port())
        bouncer.start()
        stack.callback(bouncer.stop)
        pooled = replace(
            config,
            database_url=bouncer.url_for(config.database_url),
            env={**BEHIND_PGBOUNCER, **config.env},
        )
        count = 1 if topology == "pgbouncer" else instances
        servers = [_started(stack, _numbered(pooled, n)) for n in range(1, count + 1)]
        pids = tuple(s.process.pid for s in servers)
        if topology == "pgbouncer":
            yield Deployment(servers[0].base_url, Parties(pids, postmaster, bouncer.pid))
            return
        haproxy = _haproxy(stack, servers, workdir)
        assert haproxy.process is not None
        yield Deployment(
            haproxy.base_url, Parties(pids, postmaster, bouncer.pid, haproxy.process.pid)
        )


def _started(stack: ExitStack, config: ServerConfig) -> RunningServer:
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


def _numbered(config: ServerConfig, number: int) -> ServerConfig:
    log = config.log_path.with_name(f"{config.log_path.stem}-{number}{config.log_path.suffix}")
    return replace(config, log_path=log)


def _haproxy(stack: ExitStack, servers: list[RunningServer], workdir: Path) -> HAProxy:
    backends = [s.base_url.removeprefix("http://") for s in servers]
    haproxy = HAProxy(workdir / "haproxy", free_port(), backends)
    haproxy.start()
    stack.callback(haproxy.stop)
    haproxy.wait_for_states({f"app{n}": "UP" for n in range(1, len(servers) + 1)})
    return haproxy
