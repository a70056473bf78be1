"""One bench run: for each strategy, a fresh database and a fresh server,
every scenario against that server, then the database checks."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import shutil
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from flashsale.bench.cpu import CpuSplit, measure_cpu, postmaster_pid
from flashsale.bench.database import Check, check_scenario, create_fresh_database, drop_database
from flashsale.bench.scenarios import RAW, SCENARIOS, Scenario
from flashsale.bench.server import RunningServer, start_server
from flashsale.bench.wrk import Load, WrkResult, run_wrk
from flashsale.storage.admin import return_stock_during
from flashsale.storage.embedded import start_embedded


@dataclass(frozen=True, slots=True)
class Measurement:
    strategy: str
    scenario: Scenario
    result: WrkResult
    check: Check
    cpu: CpuSplit | None = None


@dataclass(frozen=True, slots=True)
class BenchPlan:
    strategies: tuple[str, ...]
    workers: int
    load: Load
    database_url: str | None  # None: a throwaway embedded PostgreSQL


@dataclass(frozen=True, slots=True)
class DatabaseServer:
    url: str
    postmaster: int | None  # known for the embedded server: its CPU is measured


Announce = Callable[[str], None]


@contextlib.contextmanager
def database_server(url: str | None) -> Iterator[DatabaseServer]:
    """A server to create bench databases on."""
    if url:
        yield DatabaseServer(url, None)
        return
    # Not in workdir: the server stops only when this process exits (atexit),
    # and its folder must outlive it; removed after it (atexit runs in reverse).
    folder = Path(tempfile.mkdtemp(prefix="flashsale-bench-pg-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    embedded = start_embedded(folder, cleanup="delete")
    yield DatabaseServer(embedded, postmaster_pid(folder / "pgdata"))


def run_bench(plan: BenchPlan, announce: Announce) -> list[Measurement]:
    measurements: list[Measurement] = []
    with tempfile.TemporaryDirectory(prefix="flashsale-bench-") as tmp:
        workdir = Path(tmp)
        measurements.append(run_raw_ceiling(plan, workdir, announce))
        with database_server(plan.database_url) as database:
            for strategy in plan.strategies:
                measurements += run_strategy(plan, strategy, database, workdir, announce)
    return measurements


RAW_STRATEGY = "-"  # the raw ceiling has no claim strategy


def run_raw_ceiling(plan: BenchPlan, workdir: Path, announce: Announce) -> Measurement:
    """The bare callable's requests/s, in the same arrangement as the service
    (a child of this process, in its session, with the same workers)."""
    announce(f"raw ceiling: starting {plan.workers} workers")
    server = start_server(
        None, workdir / "server-raw.log", workers=plan.workers, module="flashsale.bench.raw_ceiling"
    )
    try:
        result, cpu = drive(server, None, RAW, plan.load, "raw", announce)
    finally:
        stop(server)
    return Measurement(RAW_STRATEGY, RAW, result, Check(claims=None), cpu)


def run_strategy(
    plan: BenchPlan, strategy: str, database: DatabaseServer, workdir: Path, announce: Announce
) -> list[Measurement]:
    announce(f"{strategy}: fresh database, starting {plan.workers} workers")
    url = asyncio.run(create_fresh_database(database.url, SCENARIOS))
    try:
        server = start_server(
            url,
            workdir / f"server-{strategy}.log",
            workers=plan.workers,
            env={"CLAIM_STRATEGY": strategy, "FLASHSALE_BENCH_ROUTES": "true"},
        )
        try:
            runs = [
                drive(server, database.postmaster, scenario, plan.load, strategy, announce, url)
                for scenario in SCENARIOS
            ]
        finally:
            stop(server)  # graceful: the claims in flight commit before the checks
        return [
            Measurement(
                strategy,
                scenario,
                result,
                asyncio.run(check_scenario(url, scenario, result, plan.load.connections)),
                cpu,
            )
            for scenario, (result, cpu) in zip(SCENARIOS, runs, strict=True)
        ]
    finally:
        asyncio.run(drop_database(database.url, url))


def drive(
    server: RunningServer,
    postmaster: int | None,
    scenario: Scenario,
    load: Load,
    strategy: str,
    announce: Announce,
    database_url: str | None = None,
) -> tuple[WrkResult, CpuSplit]:
    announce(f"{strategy}: {scenario.title}, {load.connections} connections, {load.duration_s:g}s")
    url = server.base_url + scenario.path
    with (
        measure_cpu(server.process.pid, postmaster) as meter,
        returning_stock(database_url, scenario, load.duration_s, announce),
    ):
        result = run_wrk(url, load, scenario.wrk_args(f"u{uuid.uuid4().hex[:6]}-"))
    return result, meter.split


@contextlib.contextmanager
def returning_stock(
    url: str | None, scenario: Scenario, seconds: float, announce: Announce
) -> Iterator[None]:
    """For a scenario with seeded claims, half released and half expiring
    over the run, from a thread of its own (wrk blocks this one)."""
    if url is None or not scenario.seeded:
        yield
        return
    seeded = [f"user-{i}" for i in range(1, scenario.seeded + 1)]
    half = len(seeded) // 2
    released: list[int] = []

    def run() -> None:
        returns = return_stock_during(
            url, scenario.coupon, releases=seeded[:half], expiries=seeded[half:], seconds=seconds
        )
        released.append(asyncio.run(returns))

    thread = threading.Thread(target=run, name="bench-returns")
    thread.start()
    try:
        yield
    finally:
        thread.join()
        announce(f"{scenario.title}: {released[0] if released else 0} released, {half} expiring")


def stop(server: RunningServer) -> None:
    try:
        server.stop()
    except subprocess.TimeoutExpired:
        server.kill()
