"""One bench run: for each strategy, a fresh database and a fresh server,
every scenario against that server, then the database checks."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from flashsale.bench.cpu import CpuSplit, Parties, measure_cpu
from flashsale.bench.database import Check, check_scenario, create_fresh_database, drop_database
from flashsale.bench.deployments import (
    DIRECT,
    DatabaseServer,
    Deployment,
    ServerConfig,
    Topology,
    stop,
)
from flashsale.bench.raffle import create_raffle, identity_env, new_backend_token
from flashsale.bench.returns import return_stock_during
from flashsale.bench.scenarios import RAW, SCENARIOS, Scenario
from flashsale.bench.server import start_server
from flashsale.bench.wrk import Load, WrkResult, run_wrk
from flashsale.config import load_settings


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
    topology: Topology = DIRECT
    scenarios: tuple[Scenario, ...] = SCENARIOS


Announce = Callable[[str], None]


def run_bench(plan: BenchPlan, announce: Announce) -> list[Measurement]:
    measurements: list[Measurement] = []
    with tempfile.TemporaryDirectory(prefix="flashsale-bench-") as tmp:
        workdir = Path(tmp)
        measurements.append(run_raw_ceiling(plan, workdir, announce))
        needed = plan.workers * load_settings().db_pool_max * plan.topology.instances
        with plan.topology.database_server(plan.database_url, needed) as database:
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
        target = Deployment(server.base_url, Parties((server.process.pid,), None))
        result, cpu = drive(target, RAW, plan.load, "raw", announce)
    finally:
        stop(server)
    return Measurement(RAW_STRATEGY, RAW, result, Check(claims=None), cpu)


def run_strategy(
    plan: BenchPlan, strategy: str, database: DatabaseServer, workdir: Path, announce: Announce
) -> list[Measurement]:
    topology = plan.topology
    announce(f"{strategy}: fresh database, {topology.name}, {plan.workers} workers per instance")
    scenarios = plan.scenarios
    # A raffle's entrants need identities: the whole server then serves with
    # CLAIM_AUTH=backend, and every scenario sends the backend's token.
    token = new_backend_token() if any(scenario.raffle for scenario in scenarios) else None
    env = identity_env(token) if token else {}
    url = asyncio.run(create_fresh_database(database.url, scenarios))
    try:
        log = workdir / f"server-{strategy}.log"
        config = ServerConfig(url, plan.workers, strategy, log, env)
        with topology.deploy(config, database.postmaster, workdir) as target:
            # Leaving the block stops the instances gracefully: the claims in
            # flight commit before the checks.
            runs = [
                drive(target, scenario, plan.load, strategy, announce, url, token)
                for scenario in scenarios
            ]
        return [
            Measurement(
                strategy,
                scenario,
                result,
                asyncio.run(check_scenario(url, scenario, result, plan.load.connections)),
                cpu,
            )
            for scenario, (result, cpu) in zip(scenarios, runs, strict=True)
        ]
    finally:
        asyncio.run(drop_database(database.url, url))


def drive(
    target: Deployment,
    scenario: Scenario,
    load: Load,
    strategy: str,
    announce: Announce,
    database_url: str | None = None,
    bearer: str | None = None,
) -> tuple[WrkResult, CpuSplit]:
    announce(f"{strategy}: {scenario.title}, {load.connections} connections, {load.duration_s:g}s")
    if scenario.raffle:
        create_raffle(target.base_url, scenario)
    url = target.base_url + scenario.path
    parties: Parties = target.parties
    with (
        measure_cpu(parties) as meter,
        returning_stock(database_url, target.base_url, scenario, load.duration_s, announce),
    ):
        result = run_wrk(url, load, scenario.wrk_args(f"u{uuid.uuid4().hex[:6]}-", bearer))
    return result, meter.split


@contextlib.contextmanager
def returning_stock(
    url: str | None, base_url: str, scenario: Scenario, seconds: float, announce: Announce
) -> Iterator[None]:
    """For a scenario with seeded claims, half released (through the
    service) and half expiring over the run, from a thread of its own (wrk
    blocks this one)."""
    if url is None or not scenario.seeded:
        yield
        return
    seeded = [f"user-{i}" for i in range(1, scenario.seeded + 1)]
    half = len(seeded) // 2
    released: list[int] = []
    failed: list[str] = []

    def run() -> None:
        try:
            returned = return_stock_during(
                url, base_url, scenario.coupon, seeded=seeded, seconds=seconds
            )
        except Exception as error:
            # Whatever stopped it (a refused socket, a database error from
            # schedule_expiries): said in the run's output, not as a thread's
            # traceback; the scenario's figures then miss the releases.
            failed.append(f"{type(error).__name__}: {error}")
            return
        released.append(returned)

    thread = threading.Thread(target=run, name="bench-returns")
    thread.start()
    try:
        yield
    finally:
        thread.join()
        done = f"{released[0] if released else 0} released, {half} expiring"
        announce(
            f"{scenario.title}: {done}" + (f"; releases stopped: {failed[0]}" if failed else "")
        )
