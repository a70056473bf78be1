"""``flashsale bench`` through the arrangements a deployment may put around
the service, for development (not in the wheel: the starters are test
infrastructure, and they read deploy/'s configuration files)::

    uv run python -m tests.support.bench --topology pgbouncer|cluster|ha|direct
        [--instances N] [flashsale bench's options]

``pgbouncer``: one instance through PgBouncer in transaction mode;
``cluster``: HAProxy in front of N instances, all through PgBouncer; ``ha``:
one instance on three Patroni nodes in strict synchronous mode, through the
multi-host URL (every commit waits for the synchronous standby); ``direct``:
what ``flashsale bench`` itself runs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from flashsale.bench.cpu import Parties
from flashsale.bench.deployments import (
    DIRECT,
    DatabaseServer,
    Deploy,
    Deployment,
    ServerConfig,
    Topology,
    deploy_direct,
    start_instance,
)
from flashsale.bench.server import RunningServer, free_port
from flashsale.cli.bench import bench_options, run_bench_command
from tests.support.patroni import missing_packages, running_cluster
from tests.support.topology import (
    BEHIND_PGBOUNCER,
    MAX_INSTANCES,
    HAProxy,
    PgBouncer,
    server_address,
)

TOPOLOGIES = ("direct", "pgbouncer", "cluster", "ha")


def topology(name: str, instances: int) -> Topology:
    if name == "pgbouncer":
        return Topology(name, _through_pgbouncer(1), DIRECT.database_server)
    if name == "cluster":
        return Topology(name, _through_pgbouncer(instances), DIRECT.database_server, instances)
    if name == "ha":
        return Topology(name, deploy_direct, patroni_database)
    return DIRECT


def _through_pgbouncer(count: int) -> Deploy:
    """One instance straight behind PgBouncer, or ``count`` behind HAProxy."""

    @contextmanager
    def deploy(config: ServerConfig, postmaster: int | None, workdir: Path) -> Iterator[Deployment]:
        with ExitStack() as stack:
            bouncer = PgBouncer(
                workdir / "pgbouncer", server_address(config.database_url), free_port()
            )
            bouncer.start()
            stack.callback(bouncer.stop)
            pooled = replace(
                config,
                database_url=bouncer.url_for(config.database_url),
                env={**BEHIND_PGBOUNCER, **config.env},
            )
            servers = [start_instance(stack, _numbered(pooled, n)) for n in range(1, count + 1)]
            pids = tuple(s.process.pid for s in servers)
            if count == 1:
                yield Deployment(servers[0].base_url, Parties(pids, postmaster, bouncer.pid))
                return
            haproxy = _haproxy(stack, servers, workdir)
            assert haproxy.process is not None
            parties = Parties(pids, postmaster, bouncer.pid, haproxy.process.pid)
            yield Deployment(haproxy.base_url, parties)

    return deploy


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


@contextmanager
def patroni_database(_url: str | None, _connections: int = 0) -> Iterator[DatabaseServer]:
    """Three Patroni nodes of this run's own; the URL lists them all with
    target_session_attrs=read-write, and the leader's CPU is measured."""
    if missing := missing_packages():
        raise click.ClickException(f"--topology ha needs the Debian packages {', '.join(missing)}")
    with running_cluster() as cluster:
        leader = cluster.leader()
        assert leader is not None
        url = cluster.multi_host_url.replace("/coupondb?", "/postgres?")
        yield DatabaseServer(url, leader.postmaster_pid())


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@bench_options
@click.option(
    "--topology",
    "name",
    type=click.Choice(TOPOLOGIES),
    default="pgbouncer",
    help="pgbouncer: one instance through PgBouncer (transaction mode); cluster: HAProxy, "
    "--instances instances, PgBouncer; ha: one instance on three Patroni nodes in strict "
    "synchronous mode (etcd, patroni, PostgreSQL 15 packages); direct: as flashsale bench.",
)
@click.option(
    "--instances",
    type=click.IntRange(1, MAX_INSTANCES),
    default=3,
    help="Instances of the service in the cluster topology.",
)
def main(name: str, instances: int, **options: Any) -> None:
    """``flashsale bench`` through PgBouncer, HAProxy or Patroni (Debian's
    packages, deploy/'s configuration files)."""
    run_bench_command(topology=topology(name, instances), **options)


if __name__ == "__main__":
    main()
