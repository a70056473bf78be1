"""``flashsale bench --attack``'s targets table: each of issue 25's targets
judged against one run's figures (made up here; the bench measures them)."""

from __future__ import annotations

from typing import Any

import pytest

from flashsale.bench.held import Held
from flashsale.bench.under_attack import AttackRun, Phase, Probe, attack_targets
from flashsale.bench.wrk import WrkResult

BACK = Held(connections=1, requests=1, streams=0, spooled_bytes=0, pool_in_use=0, after_s=0.6)
REPORT = {"half_sent_open": 4000, "half_sent_cut_within_60s": 4000}


def phase(name: str, claims: int, p99_ms: float, probe_p99_ms: float, rss_mb: float) -> Phase:
    wrk = WrkResult(8.0, claims, {200: claims}, 0, 10.0, p99_ms)
    probe = Probe(seconds=[0.005] * 99 + [probe_p99_ms / 1000] * 2)
    return Phase(name, wrk, probe, rss_mb)


def run(**changes: Any) -> AttackRun:
    figures = {"ratio": 0.9, "claim_p99": 60.0, "probe_p99": 30.0, "rss": 170.0}
    figures.update(changes.pop("figures", {}))
    plain = phase("plain", 80_000, 50.0, 20.0, 120.0)
    attacked = phase(
        "under attack", int(80_000 * figures["ratio"]), figures["claim_p99"],
        figures["probe_p99"], figures["rss"],
    )  # fmt: skip
    fields: dict[str, Any] = {"ready": {}, "report": REPORT, "descriptors": None, "held": BACK}
    fields.update(changes)
    return AttackRun(plain, attacked, phase("after", 80_000, 50.0, 20.0, 120.0), **fields)


def verdicts(done: AttackRun) -> dict[str, bool]:
    return {target.name: target.met for target in attack_targets(done)}


def test_a_run_within_every_bound_meets_every_target() -> None:
    assert all(verdicts(run()).values())
    assert len(verdicts(run())) == 6


@pytest.mark.parametrize(
    ("done", "missed"),
    [
        (run(figures={"ratio": 0.7}), "under attack: claims/s >= 80% of plain"),
        (run(figures={"claim_p99": 130.0}), "under attack: claim p99 <= 100 ms"),
        (run(figures={"probe_p99": 120.0}), "under attack: GET of a small coupon, p99 <= 100 ms"),
        (run(figures={"rss": 1500.0}), "no worker above 1 GB"),
        (
            run(report={"half_sent_open": 4000, "half_sent_cut_within_60s": 3999}),
            "every half-sent body cut within 60 s",
        ),
        (
            run(held=Held(3, 3, 2, 0, 1, 15.0)),
            "after the attack: every connection and slot back",
        ),
        (run(held=None), "after the attack: every connection and slot back"),
    ],
)
def test_each_target_is_missed_on_its_own_figure(done: AttackRun, missed: str) -> None:
    judged = verdicts(done)
    assert not judged[missed]
    assert all(met for name, met in judged.items() if name != missed)
