"""``flashsale bench``: the service under load, with the invariants checked.

The product's bench drives one instance straight to PostgreSQL. The same
run through PgBouncer, HAProxy or Patroni is a development tool
(``python -m tests.support.bench``) built from ``bench_options`` and
``run_bench_command`` below."""

from __future__ import annotations

import os
import platform
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console

from flashsale.bench.claimers import CLAIMERS, Claimer, ClaimersPlan, run_claimers
from flashsale.bench.claimers_report import render_claimers
from flashsale.bench.database import Check
from flashsale.bench.deployments import DIRECT, Topology
from flashsale.bench.draw import draw_lines, run_draw_bench
from flashsale.bench.report import render, targets_table
from flashsale.bench.runner import BenchPlan, run_bench
from flashsale.bench.scenarios import EXTRA_SCENARIOS, SCENARIOS, Scenario
from flashsale.bench.under_attack import (
    attack_lines,
    attack_targets,
    render_attack,
    run_attack_bench,
)
from flashsale.bench.webhook_load import render_rounds, run_webhook_bench
from flashsale.bench.wrk import Load, WrkError, require_wrk
from flashsale.config import load_settings

STRATEGIES = ("batched", "transaction")
Command = TypeVar("Command", bound=Callable[..., Any])
Item = TypeVar("Item")

_OPTIONS = (
    click.option("--duration", type=float, default=10.0, help="Seconds of load per scenario."),
    click.option("--connections", type=int, default=256, help="Concurrent connections (wrk -c)."),
    click.option("--threads", type=int, default=2, help="wrk threads (wrk -t)."),
    click.option("--workers", type=int, default=2, help="Server worker processes (WEB_WORKERS)."),
    click.option(
        "--strategies",
        default=",".join(STRATEGIES),
        help="Comma-separated claim strategies to measure (CLAIM_STRATEGY).",
    ),
    click.option(
        "--scenarios",
        default=",".join(scenario.key for scenario in SCENARIOS),
        help="Comma-separated scenarios to run, in this order (the ceiling first warms up); "
        "also 'raffle' (raffle entries: the whole run then claims with a backend token).",
    ),
    click.option(
        "--database-url",
        help="PostgreSQL server to create the bench databases on "
        "[default: a throwaway embedded PostgreSQL]",
    ),
)


def bench_options(command: Command) -> Command:
    """The options every bench command shares."""
    for option in reversed(_OPTIONS):
        command = option(command)
    return command


@click.command()
@bench_options
@click.option(
    "--webhooks",
    type=int,
    default=0,
    help="Instead of the scenarios: this many rounds of the hot coupon plain, then with 5 "
    "webhook endpoints on every event (one answering after 10 s, one 1 MB); claims/s of "
    "both, each endpoint's lag and drain time (bench/webhook_load.py).",
)
@click.option(
    "--attack",
    is_flag=True,
    help="Instead of the scenarios: the hot coupon plain, then while another process holds "
    "4,000 half-sent claim bodies, 300 dashboard streams and 10 readers of a 150,000-claimer "
    "coupon at 2 KB/s, then after it left; claims/s, p99s, a small coupon's GET p99, worker "
    "memory, half-sent bodies cut within 60 s (bench/under_attack.py).",
)
@click.option(
    "--draw",
    type=int,
    default=0,
    help="Instead of the scenarios: a raffle of this many entrants loaded straight into a "
    "fresh database, then drawn; the draw's wall time, PostgreSQL's CPU and its longest "
    "transaction (bench/draw.py).",
)
@click.option(
    "--claimers",
    default="",
    help="Instead of the scenarios: the hot coupon claimed by these callers (comma-separated: "
    "plain = CLAIM_AUTH=open, hs256 = HS256 claim tokens, rs256 = RS256 end users, every "
    "token new and minted before the run), rows alternating over --rounds; claims/s, p99, "
    "ratio to plain, CPU and verification cost per token (bench/claimers.py).",
)
@click.option("--rounds", type=int, default=3, help="Rounds of --claimers.")
def bench(
    webhooks: int, attack: bool, draw: int, claimers: str, rounds: int, **options: Any
) -> None:
    """Measure claims/s and latency under wrk, for each claim strategy, on a
    hot coupon and in a rush (stock 1,000), beside the same server's
    no-database ceiling; then check the database: no oversell, no double
    claim, every 200 committed. Each strategy gets a fresh database."""
    if webhooks:
        bench_webhooks(webhooks, **options)
        return
    if attack:
        bench_attack(**options)
        return
    if draw:
        bench_draw(draw, database_url=options["database_url"])
        return
    if claimers:
        bench_claimers(chosen_claimers(claimers), rounds, **options)
        return
    run_bench_command(topology=DIRECT, **options)


def bench_webhooks(
    rounds: int, *, duration: float, connections: int, threads: int, workers: int,
    database_url: str | None, **_: Any,
) -> None:  # fmt: skip
    """The webhooks comparison (bench/webhook_load.py), on a direct instance."""
    load = Load(connections, threads, duration)
    with direct_run(database_url, workers) as run:
        done = run_webhook_bench(run.database_url, run.folder, load, workers, rounds, run.status)
    run.console.print(render_rounds(done))


def bench_draw(entries: int, *, database_url: str | None) -> None:
    """A raffle's draw over ``entries`` entrants (bench/draw.py)."""
    console = make_console()
    console.print(f"[dim]{machine_line()}; load {os.getloadavg()[0]:.2f}[/dim]")
    with (
        console.status(f"loading {entries:,} entrants, then drawing"),
        DIRECT.database_server(database_url, 10) as database,
    ):
        done = run_draw_bench(database.url, database.postmaster, entries)
    for line in draw_lines(done):
        console.print(line)


def bench_attack(
    *, duration: float, connections: int, threads: int, workers: int,
    database_url: str | None, **_: Any,
) -> None:  # fmt: skip
    """The hot coupon under attack (bench/under_attack.py), on a direct instance."""
    load = Load(connections, threads, duration)
    with direct_run(database_url, workers) as run:
        done = run_attack_bench(run.database_url, run.folder, load, workers, run.status)
    run.console.print(render_attack(done))
    for line in attack_lines(done):
        run.console.print(line)
    run.console.print(targets_table(attack_targets(done)))
    run.console.print(f"[dim]load after the run {os.getloadavg()[0]:.2f}[/dim]")


@dataclass(frozen=True)
class DirectRun:
    """What a one-off bench on a direct instance runs with."""

    console: Console
    status: Callable[[str], None]
    folder: Path
    database_url: str


@contextmanager
def direct_run(database_url: str | None, workers: int) -> Iterator[DirectRun]:
    """wrk checked, the machine line printed, a spinner, a temporary folder and a
    database server sized for ``workers`` pools; all of them gone on exit."""
    require_wrk()
    console = make_console()
    console.print(f"[dim]{machine_line()}; load {os.getloadavg()[0]:.2f}[/dim]")
    with (
        console.status("starting") as status,
        tempfile.TemporaryDirectory(prefix="flashsale-bench-") as tmp,
        DIRECT.database_server(database_url, workers * load_settings().db_pool_max) as database,
    ):
        yield DirectRun(console, status.update, Path(tmp), database.url)


def bench_claimers(
    chosen: tuple[Claimer, ...], rounds: int, *, duration: float, connections: int,
    threads: int, workers: int, database_url: str | None, **_: Any,
) -> None:  # fmt: skip
    """The claimers comparison (bench/claimers.py); exit 1 if a check failed."""
    try:
        require_wrk()
    except WrkError as error:
        raise click.ClickException(str(error)) from None
    if rounds < 1:
        raise click.BadParameter("at least 1", param_hint="--rounds")
    console = make_console()
    console.print(f"[dim]{machine_line()}; load {os.getloadavg()[0]:.2f}[/dim]")
    plan = ClaimersPlan(chosen, rounds, workers, Load(connections, threads, duration), database_url)
    with console.status("starting") as status:
        report = run_claimers(plan, lambda text: status.update(text))
    console.print(render_claimers(report))
    finish(console, [run.check for run in report.runs])


def finish(console: Console, checks: list[Check]) -> None:
    """The closing line; exit 1 if a database check failed."""
    console.print(f"[dim]load after the run {os.getloadavg()[0]:.2f}[/dim]")
    if any(not check.ok for check in checks):
        raise SystemExit(1)


def chosen_claimers(keys: str) -> tuple[Claimer, ...]:
    """The claimers --claimers names, in its order."""
    return named({claimer.key: claimer for claimer in CLAIMERS}, keys, "--claimers")


def named(by_key: dict[str, Item], keys: str, option: str) -> tuple[Item, ...]:
    """The items a comma-separated option names, in its order, once each."""
    names = [key.strip() for key in keys.split(",") if key.strip()]
    if unknown := [key for key in names if key not in by_key]:
        raise click.BadParameter(f"unknown name {unknown[0]!r}", param_hint=option)
    return tuple(by_key[key] for key in dict.fromkeys(names))


def run_bench_command(
    *,
    duration: float,
    connections: int,
    threads: int,
    workers: int,
    strategies: str,
    database_url: str | None,
    topology: Topology,
    scenarios: str = "",
) -> None:
    """Runs the plan, prints the table; exit 1 if a database check failed."""
    chosen = tuple(name.strip() for name in strategies.split(",") if name.strip())
    if unknown := [name for name in chosen if name not in STRATEGIES]:
        raise click.BadParameter(f"unknown strategy {unknown[0]!r}", param_hint="--strategies")
    measured = chosen_scenarios(scenarios)
    try:
        require_wrk()
    except WrkError as error:
        raise click.ClickException(str(error)) from None
    load = Load(connections, threads, duration)
    plan = BenchPlan(chosen, workers, load, database_url, topology, measured)
    console = make_console()
    shape = f"{topology.instances} instance{'s' if topology.instances > 1 else ''}"
    console.print(
        f"[dim]{machine_line()}; load {os.getloadavg()[0]:.2f}; topology {topology.name}, "
        f"{shape} of {workers} workers[/dim]"
    )
    with console.status("starting") as status:
        measurements = run_bench(plan, lambda text: status.update(text))
    console.print(render(measurements))
    finish(console, [m.check for m in measurements])


def chosen_scenarios(keys: str) -> tuple[Scenario, ...]:
    """The scenarios --scenarios names (all when empty), in its order."""
    by_key = {scenario.key: scenario for scenario in SCENARIOS + EXTRA_SCENARIOS}
    return named(by_key, keys, "--scenarios") or SCENARIOS


def make_console() -> Console:
    """Wide enough for the table when the output goes to a file or a pipe."""
    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 190
    return console


def machine_line() -> str:
    return f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}"
