"""The bench's table and its targets, from the measurements of one run."""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Group
from rich.table import Table
from rich.text import Text

from flashsale.bench.runner import Measurement
from flashsale.bench.scenarios import (
    CEILING,
    HELD,
    HOT,
    HOT_KEYED,
    MANY,
    MANY_SMALL,
    RAFFLE,
    RAW,
    RETURNS,
    RUSH,
)

BATCHED = "batched"
TRANSACTION = "transaction"


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    measured: str
    met: bool


def find(measurements: list[Measurement], strategy: str, key: str) -> Measurement | None:
    for measurement in measurements:
        if measurement.strategy == strategy and measurement.scenario.key == key:
            return measurement
    return None


def ceiling_share(measurements: list[Measurement], measurement: Measurement) -> float | None:
    """Requests/s as a share of the same server's no-database ceiling."""
    return _share(find(measurements, measurement.strategy, CEILING.key), measurement)


def raw_share(measurements: list[Measurement], measurement: Measurement) -> float | None:
    """Requests/s as a share of the run's raw ceiling (no framework, no database)."""
    raw = next((m for m in measurements if m.scenario is RAW), None)
    return _share(raw, measurement)


def _share(ceiling: Measurement | None, measurement: Measurement) -> float | None:
    if ceiling is None or ceiling.result.requests_per_s == 0:
        return None
    return measurement.result.requests_per_s / ceiling.result.requests_per_s


def statuses(measurement: Measurement) -> str:
    result = measurement.result
    parts = [f"{code}:{n}" for code, n in sorted(result.statuses.items())]
    if result.socket_errors:
        parts.append(f"socket errors:{result.socket_errors}")
    return " ".join(parts)


def cpu_per_request(measurement: Measurement) -> str:
    """CPU microseconds each party spent per request: on a shared machine
    steadier than the rates, and it shows where a claim's time goes."""
    if measurement.cpu is None:
        return "-"
    us = measurement.cpu.per_request_us(measurement.result.requests)
    return " / ".join(f"{value:.0f}" for value in us)


def cpu_parties(measurements: list[Measurement]) -> str:
    """The CPU column's parties: PgBouncer and HAProxy when they were measured."""
    splits = [m.cpu for m in measurements if m.cpu is not None]
    names = ["server", "pg"]
    if any(cpu.pgbouncer is not None for cpu in splits):
        names.append("pgbouncer")
    if any(cpu.haproxy is not None for cpu in splits):
        names.append("haproxy")
    return "/".join([*names, "wrk"])


def invariants(measurement: Measurement) -> Text:
    check = measurement.check
    if check.claims is None:
        return Text("n/a (no database)", style="dim")
    if check.ok:
        return Text(f"ok ({check.claims} {check.rows})", style="green")
    return Text("FAILED: " + "; ".join(check.problems), style="bold red")


def results_table(measurements: list[Measurement]) -> Table:
    table = Table(title="flashsale bench")
    for column in ("strategy", "scenario", "claims/s", "requests/s", "p50 ms", "p99 ms"):
        table.add_column(column, justify="left" if column in ("strategy", "scenario") else "right")
    table.add_column("of ceiling", justify="right")
    table.add_column("of raw", justify="right")
    table.add_column(f"CPU us/request\n{cpu_parties(measurements)}", justify="right")
    for column in ("statuses", "database check"):
        table.add_column(column)
    for m in measurements:
        share = ceiling_share(measurements, m)
        raw = raw_share(measurements, m)
        no_claims = m.scenario in (CEILING, RAW)
        claims = "-" if no_claims else f"{m.result.ok_per_s:,.0f}"
        table.add_row(
            m.strategy,
            m.scenario.title,
            claims,
            f"{m.result.requests_per_s:,.0f}",
            f"{m.result.p50_ms:.1f}",
            f"{m.result.p99_ms:.1f}",
            "-" if share is None or no_claims else f"{share:.0%}",
            "-" if raw is None or m.scenario is RAW else f"{raw:.0%}",
            cpu_per_request(m),
            statuses(m),
            invariants(m),
        )
    return table


def hot_targets(measurements: list[Measurement]) -> list[Target]:
    hot = find(measurements, BATCHED, HOT.key)
    if hot is None:
        return []
    claims = hot.result.ok_per_s
    targets = [
        Target("batched hot coupon: >= 10,000 claims/s", f"{claims:,.0f}/s", claims >= 10_000),
        Target(
            "batched hot coupon: p99 <= 50 ms",
            f"{hot.result.p99_ms:.1f} ms",
            hot.result.p99_ms <= 50,
        ),
    ]
    baseline = find(measurements, TRANSACTION, HOT.key)
    if baseline is not None and baseline.result.ok_per_s > 0:
        ratio = claims / baseline.result.ok_per_s
        targets.append(Target("batched hot coupon: >= 8x transaction", f"{ratio:.1f}x", ratio >= 8))
    share = ceiling_share(measurements, hot)
    if share is not None:
        targets.append(
            Target("batched hot coupon: >= 75% of ceiling", f"{share:.0%}", share >= 0.75)
        )
    raw = raw_share(measurements, hot)
    if raw is not None:
        targets.append(
            Target("batched hot coupon: >= 40% of raw ceiling", f"{raw:.0%}", raw >= 0.4)
        )
    return targets


def life_targets(measurements: list[Measurement]) -> list[Target]:
    """Holds, and stock coming back, cost little: >= 85% of the plain hot
    coupon's claims/s in the same run; an Idempotency-Key on every claim
    >= 80% (issue 10); a raffle's entries >= 80% (issue 27)."""
    hot = find(measurements, BATCHED, HOT.key)
    if hot is None or hot.result.ok_per_s == 0:
        return []
    targets = []
    for scenario, share in ((HOT_KEYED, 0.80), (HELD, 0.85), (RETURNS, 0.85), (RAFFLE, 0.80)):
        other = find(measurements, BATCHED, scenario.key)
        if other is not None:
            ratio = other.result.ok_per_s / hot.result.ok_per_s
            name = f"batched {scenario.title}: >= {share:.0%} of hot coupon"
            targets.append(Target(name, f"{ratio:.0%}", ratio >= share))
    return targets


def spread_targets(measurements: list[Measurement]) -> list[Target]:
    """A sale of many products at the speed of one hot coupon (issue 23)."""
    targets = []
    hot, many = find(measurements, BATCHED, HOT.key), find(measurements, BATCHED, MANY.key)
    if many is not None:
        p99 = many.result.p99_ms
        targets.append(Target("batched many coupons: p99 <= 50 ms", f"{p99:.1f} ms", p99 <= 50))
    if hot is not None and many is not None and hot.result.ok_per_s > 0:
        ratio = many.result.ok_per_s / hot.result.ok_per_s
        name = "batched many coupons: >= 80% of hot coupon"
        targets.append(Target(name, f"{ratio:.0%}", ratio >= 0.8))
    baseline = find(measurements, TRANSACTION, MANY.key)
    if many is not None and baseline is not None and baseline.result.ok_per_s > 0:
        ratio = many.result.ok_per_s / baseline.result.ok_per_s
        name = "batched many coupons: >= 4x transaction"
        targets.append(Target(name, f"{ratio:.1f}x", ratio >= 4))
    small, rush = find(measurements, BATCHED, MANY_SMALL.key), find(measurements, BATCHED, RUSH.key)
    if small is not None and rush is not None and rush.result.requests_per_s > 0:
        ratio = small.result.requests_per_s / rush.result.requests_per_s
        name = "batched many small sales: >= 80% of rush requests/s"
        targets.append(Target(name, f"{ratio:.0%}", ratio >= 0.8))
    return targets


def all_targets(measurements: list[Measurement]) -> list[Target]:
    targets = hot_targets(measurements) + life_targets(measurements) + spread_targets(measurements)
    rush = find(measurements, BATCHED, RUSH.key)
    if rush is not None:
        rate = rush.result.requests_per_s
        targets.append(
            Target("batched rush: >= 12,000 requests/s", f"{rate:,.0f}/s", rate >= 12_000)
        )
    broken = [m for m in measurements if not m.check.ok]
    targets.append(
        Target(
            "no oversell, no double claim, every 200 committed",
            f"{len(broken)} scenario(s) failed",
            not broken,
        )
    )
    return targets


def targets_table(targets: list[Target]) -> Table:
    table = Table(title="targets (2 cores, 256 connections)")
    table.add_column("target")
    table.add_column("measured", justify="right")
    table.add_column("", justify="center")
    for target in targets:
        mark = Text("met", style="green") if target.met else Text("MISSED", style="bold red")
        table.add_row(target.name, target.measured, mark)
    return table


def render(measurements: list[Measurement]) -> Group:
    return Group(results_table(measurements), targets_table(all_targets(measurements)))
