"""``flashsale bench --claimers``: the hot coupon claimed without a credential
(CLAIM_AUTH=open, the user in the body: the plain row), with HS256 claim
tokens and by RS256 end users (CLAIM_AUTH=user, the user the token's sub),
every claimer new so that no token is ever a cache hit (issue 24,
docs/benchmarks.md).

Two instances on one fresh database (one open, one verifying tokens), rows
alternating round after round in one run, so that each round's ratio to
the plain row compares neighbours in time on a shared machine. Every token
is minted before the first round; wrk only reads them. The verification
cost per token is timed apart (bench/tokens.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from flashsale.bench.cpu import CpuSplit
from flashsale.bench.database import Check, check_scenario, create_fresh_database, drop_database
from flashsale.bench.deployments import DIRECT, DatabaseServer, Deployment, ServerConfig
from flashsale.bench.runner import Announce, drive
from flashsale.bench.scenarios import CEILING, HOT, Scenario
from flashsale.bench.tokens import (
    HS256,
    RS256,
    Keys,
    mint,
    mint_many,
    new_keys,
    new_subs,
    token_files,
    verification_cost,
)
from flashsale.bench.wrk import Load, WrkResult
from flashsale.config import load_settings

STRATEGY = "batched"  # the product's default


@dataclass(frozen=True, slots=True)
class Claimer:
    key: str
    title: str
    algorithm: str | None  # None: no token (the open contract)
    # Tokens minted per second of load: above what the row can claim on
    # 2 cores, so that none repeats (the report counts any that did).
    tokens_per_s: int = 0


PLAIN = Claimer("plain", HOT.title, None)
HS256_TOKENS = Claimer("hs256", "hot coupon, HS256 claim tokens", HS256, 30_000)
RS256_CLAIMERS = Claimer("rs256", "hot coupon, RS256 claimers", RS256, 10_000)
CLAIMERS = (PLAIN, HS256_TOKENS, RS256_CLAIMERS)


@dataclass(frozen=True, slots=True)
class ClaimersPlan:
    claimers: tuple[Claimer, ...]
    rounds: int
    workers: int
    load: Load
    database_url: str | None  # None: a throwaway embedded PostgreSQL


@dataclass(frozen=True, slots=True)
class ClaimerRun:
    """One row's wrk run in one round, and the database's check of it."""

    claimer: Claimer
    round: int
    result: WrkResult
    cpu: CpuSplit
    tokens: int  # minted for this run (0: plain)
    check: Check

    @property
    def reused(self) -> int:
        """Requests that carried a token an earlier request of the run had."""
        return max(0, self.result.requests - self.tokens) if self.tokens else 0


@dataclass(frozen=True, slots=True)
class ClaimersReport:
    runs: list[ClaimerRun]
    # algorithm -> (us per new token, us per remembered token), one core
    costs: dict[str, tuple[float, float]]


def run_claimers(plan: ClaimersPlan, announce: Announce) -> ClaimersReport:
    with tempfile.TemporaryDirectory(prefix="flashsale-bench-") as tmp:
        workdir = Path(tmp)
        keys = new_keys(workdir)
        costs = {}
        for claimer in plan.claimers:
            if claimer.algorithm is not None:
                announce(f"timing {claimer.algorithm} verification")
                costs[claimer.algorithm] = verification_cost(keys, claimer.algorithm)
        runs = scheduled(plan, keys, workdir, announce)
        needed = 2 * plan.workers * load_settings().db_pool_max
        with DIRECT.database_server(plan.database_url, needed) as database:
            return ClaimersReport(measured(plan, runs, keys, database, workdir, announce), costs)


def scheduled(
    plan: ClaimersPlan, keys: Keys, workdir: Path, announce: Announce
) -> list[tuple[Claimer, int, Scenario, int]]:
    """Every run in order (round by round), each with its own coupon and its
    tokens written out: (claimer, round, scenario, tokens minted)."""
    runs = []
    for number in range(1, plan.rounds + 1):
        for claimer in plan.claimers:
            coupon = f"BENCH_{claimer.key.upper()}_{number}"
            scenario = dataclasses.replace(HOT, key=claimer.key, title=claimer.title, coupon=coupon)
            count = 0
            if claimer.algorithm is not None:
                count = int(claimer.tokens_per_s * plan.load.duration_s)
                announce(f"round {number}: minting {count:,} {claimer.algorithm} tokens")
                tokens = mint_many(keys, claimer.algorithm, new_subs(coupon.lower(), count))
                files = token_files(workdir, coupon.lower(), tokens, plan.load.threads)
                scenario = dataclasses.replace(scenario, tokens=files)
            runs.append((claimer, number, scenario, count))
    return runs


def measured(
    plan: ClaimersPlan,
    runs: list[tuple[Claimer, int, Scenario, int]],
    keys: Keys,
    database: DatabaseServer,
    workdir: Path,
    announce: Announce,
) -> list[ClaimerRun]:
    """The runs against the two instances, then every run's database check
    (after the instances stopped: the claims in flight have committed)."""
    url = asyncio.run(create_fresh_database(database.url, tuple(run[2] for run in runs)))
    try:
        with instances(plan, url, keys, database, workdir) as targets:
            warm_up(targets, plan.load, keys, workdir, announce)
            results = []
            for claimer, number, scenario, _ in runs:
                target = targets["open" if claimer.algorithm is None else "user"]
                label = f"round {number}"
                results.append(drive(target, scenario, plan.load, label, announce))
        return [
            ClaimerRun(
                claimer,
                number,
                result,
                cpu,
                count,
                asyncio.run(check_scenario(url, scenario, result, plan.load.connections)),
            )
            for (claimer, number, scenario, count), (result, cpu) in zip(runs, results, strict=True)
        ]
    finally:
        asyncio.run(drop_database(database.url, url))


WARM_UP_S = 2.0


def warm_up(
    targets: dict[str, Deployment], load: Load, keys: Keys, workdir: Path, announce: Announce
) -> None:
    """Each instance on the no-database route for WARM_UP_S, unmeasured, so
    that the first round's rows meet warm workers alike (the token instance
    with one HS256 token per wrk thread, remembered after its first use)."""
    short = dataclasses.replace(load, duration_s=WARM_UP_S)
    for name, target in targets.items():
        scenario = CEILING
        if name == "user":
            subs = [f"warm-{thread}" for thread in range(load.threads)]
            tokens = token_files(workdir, "warm", mint(keys, HS256, subs), load.threads)
            scenario = dataclasses.replace(CEILING, tokens=tokens)
        drive(target, scenario, short, f"warm-up ({name})", announce)


@contextmanager
def instances(
    plan: ClaimersPlan, url: str, keys: Keys, database: DatabaseServer, workdir: Path
) -> Iterator[dict[str, Deployment]]:
    """ "open" (CLAIM_AUTH=open) and "user" (tokens verified), as needed."""
    wanted = {"open": {}, "user": keys.server_env()}
    needed = {"open" if c.algorithm is None else "user" for c in plan.claimers}
    with ExitStack() as stack:
        targets = {}
        for name, env in wanted.items():
            if name in needed:
                config = ServerConfig(url, plan.workers, STRATEGY, workdir / f"{name}.log", env)
                targets[name] = stack.enter_context(
                    DIRECT.deploy(config, database.postmaster, workdir)
                )
        yield targets
