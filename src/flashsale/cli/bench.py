"""``flashsale bench``: the service under load, with the invariants checked."""

from __future__ import annotations

import os
import platform
import tempfile
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from flashsale.bench.deployments import TOPOLOGIES
from flashsale.bench.report import render
from flashsale.bench.runner import BenchPlan, database_server, run_bench
from flashsale.bench.topology import MAX_INSTANCES
from flashsale.bench.webhook_load import render_rounds, run_webhook_bench
from flashsale.bench.wrk import Load, WrkError, ensure_wrk

STRATEGIES = ("batched", "transaction")


@click.command()
@click.option("--duration", type=float, default=10.0, help="Seconds of load per scenario.")
@click.option("--connections", type=int, default=256, help="Concurrent connections (wrk -c).")
@click.option("--threads", type=int, default=2, help="wrk threads (wrk -t).")
@click.option("--workers", type=int, default=2, help="Server worker processes (WEB_WORKERS).")
@click.option(
    "--strategies",
    default=",".join(STRATEGIES),
    help="Comma-separated claim strategies to measure (CLAIM_STRATEGY).",
)
@click.option(
    "--database-url",
    help="PostgreSQL server to create the bench databases on "
    "[default: a throwaway embedded PostgreSQL]",
)
@click.option(
    "--topology",
    type=click.Choice(TOPOLOGIES),
    default="direct",
    help="direct: one instance to PostgreSQL; pgbouncer: through PgBouncer (transaction "
    "mode); cluster: HAProxy, --instances instances, PgBouncer; ha: one instance on three "
    "Patroni nodes in strict synchronous mode (etcd, patroni, PostgreSQL 15 packages). "
    "Uses deploy/'s configs.",
)
@click.option(
    "--instances",
    type=click.IntRange(1, MAX_INSTANCES),
    default=3,
    help="Instances of the service in the cluster topology.",
)
@click.option(
    "--webhooks",
    type=int,
    default=0,
    help="Instead of the scenarios: this many rounds of the hot coupon plain, then with 5 "
    "webhook endpoints on every event (one answering after 10 s, one 1 MB); claims/s of "
    "both, each endpoint's lag and drain time (bench/webhook_load.py).",
)
def bench(
    duration: float,
    connections: int,
    threads: int,
    workers: int,
    strategies: str,
    database_url: str | None,
    topology: str,
    instances: int,
    webhooks: int,
) -> None:
    """Measure claims/s and latency under wrk, for each claim strategy, on a
    hot coupon and in a rush (stock 1,000), beside the same server's
    no-database ceiling; then check the database: no oversell, no double
    claim, every 200 committed. Each strategy gets a fresh database."""
    chosen = tuple(name.strip() for name in strategies.split(",") if name.strip())
    if unknown := [name for name in chosen if name not in STRATEGIES]:
        raise click.BadParameter(f"unknown strategy {unknown[0]!r}", param_hint="--strategies")
    console = make_console()
    try:
        ensure_wrk()
    except WrkError as error:
        raise click.ClickException(str(error)) from None
    load = Load(connections, threads, duration)
    plan = BenchPlan(chosen, workers, load, database_url, topology, instances)
    shape = f"{instances} instances" if topology == "cluster" else "1 instance"
    console.print(
        f"[dim]{machine_line()}; load {os.getloadavg()[0]:.2f}; topology {topology}, "
        f"{shape} of {workers} workers[/dim]"
    )
    if webhooks:
        console.print(bench_webhooks(plan, webhooks, console))
        return
    with console.status("starting") as status:
        measurements = run_bench(plan, lambda text: status.update(text))
    console.print(render(measurements))
    console.print(f"[dim]load after the run {os.getloadavg()[0]:.2f}[/dim]")
    if any(not m.check.ok for m in measurements):
        raise SystemExit(1)


def bench_webhooks(plan: BenchPlan, rounds: int, console: Console) -> Table:
    with (
        console.status("starting") as status,
        tempfile.TemporaryDirectory(prefix="flashsale-bench-") as tmp,
        database_server(plan.database_url) as database,
    ):
        done = run_webhook_bench(
            database.url, Path(tmp), plan.load, plan.workers, rounds, status.update
        )
    return render_rounds(done)


def make_console() -> Console:
    """Wide enough for the table when the output goes to a file or a pipe."""
    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 190
    return console


def machine_line() -> str:
    return f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}"
