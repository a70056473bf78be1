"""The table of ``flashsale bench --claimers``: one row per claimer, each
figure the median over the rounds, the ratio to plain taken round by round
(neighbours in time) before its median."""

from __future__ import annotations

import statistics

from rich.console import Group
from rich.table import Table
from rich.text import Text

from flashsale.bench.claimers import (
    PLAIN,
    RS256_CLAIMERS,
    Claimer,
    ClaimerRun,
    ClaimersReport,
)
from flashsale.bench.report import Target, targets_table

# Issue 24: RS256 costs what RSA costs (about as much as the rest of a claim);
# HS256 claim tokens are the cheap way to give a claim an identity.
RS256_EXPECTED = (0.55, 0.65)
HS256_TARGET = 0.85


def ratios(report: ClaimersReport, claimer: Claimer) -> list[float]:
    """claims/s against the plain row of the same round, round by round."""
    plain = {run.round: run.result.ok_per_s for run in report.runs if run.claimer == PLAIN}
    return [
        run.result.ok_per_s / plain[run.round]
        for run in report.runs
        if run.claimer == claimer and plain.get(run.round)
    ]


def claimers_table(report: ClaimersReport) -> Table:
    table = Table(title="flashsale bench --claimers (medians over the rounds)")
    table.add_column("claimers")
    for column in ("rounds", "claims/s", "p99 ms", "of plain", "CPU us/request\nserver/pg/wrk"):
        table.add_column(column, justify="right")
    table.add_column("verify us/token\nnew / remembered", justify="right")
    table.add_column("tokens reused", justify="right")
    table.add_column("statuses")
    table.add_column("database check")
    for claimer in dict.fromkeys(run.claimer for run in report.runs):
        runs = [run for run in report.runs if run.claimer == claimer]
        table.add_row(*_row(report, claimer, runs))
    return table


def _row(report: ClaimersReport, claimer: Claimer, runs: list[ClaimerRun]) -> list[str | Text]:
    shares = ratios(report, claimer)
    cost = report.costs.get(claimer.algorithm or "")
    cpu = [run.cpu.per_request_us(run.result.requests) for run in runs]
    return [
        claimer.title,
        str(len(runs)),
        _median_of([run.result.ok_per_s for run in runs], "{:,.0f}"),
        _median_of([run.result.p99_ms for run in runs], "{:.1f}"),
        "-" if claimer == PLAIN or not shares else f"{statistics.median(shares):.0%}",
        " / ".join(f"{statistics.median(party):.0f}" for party in zip(*cpu, strict=True)),
        "-" if cost is None else f"{cost[0]:.1f} / {cost[1]:.2f}",
        "-" if claimer.algorithm is None else f"{sum(run.reused for run in runs):,}",
        _statuses(runs),
        _checked(runs),
    ]


def _median_of(values: list[float], form: str) -> str:
    """The median, then every round's figure."""
    each = ", ".join(form.format(value) for value in values)
    return f"{form.format(statistics.median(values))} ({each})"


def _statuses(runs: list[ClaimerRun]) -> str:
    totals: dict[int, int] = {}
    for run in runs:
        for code, count in run.result.statuses.items():
            totals[code] = totals.get(code, 0) + count
    errors = sum(run.result.socket_errors for run in runs)
    parts = [f"{code}:{count}" for code, count in sorted(totals.items())]
    return " ".join(parts + ([f"socket errors:{errors}"] if errors else []))


def _checked(runs: list[ClaimerRun]) -> Text:
    problems = [problem for run in runs for problem in run.check.problems]
    if problems:
        return Text("FAILED: " + "; ".join(problems), style="bold red")
    return Text(f"ok ({sum(run.check.claims or 0 for run in runs)} claims)", style="green")


def claimers_targets(report: ClaimersReport) -> list[Target]:
    targets = []
    for claimer in dict.fromkeys(run.claimer for run in report.runs):
        shares = ratios(report, claimer)
        if claimer == PLAIN or not shares:
            continue
        share = statistics.median(shares)
        if claimer == RS256_CLAIMERS:
            low, high = RS256_EXPECTED
            name = f"{claimer.title}: {low:.0%}-{high:.0%} of plain (expected)"
            targets.append(Target(name, f"{share:.1%}", low <= share))
        else:
            name = f"{claimer.title}: >= {HS256_TARGET:.0%} of plain"
            targets.append(Target(name, f"{share:.1%}", share >= HS256_TARGET))
    broken = [run for run in report.runs if not run.check.ok]
    name = "no oversell, no double claim, every 200 committed"
    targets.append(Target(name, f"{len(broken)} run(s) failed", not broken))
    return targets


def render_claimers(report: ClaimersReport) -> Group:
    return Group(claimers_table(report), targets_table(claimers_targets(report)))
