"""The metrics' labels stay few (unknown coupons share one, coupons are
capped per process), and prometheus_client is imported only once its
multiprocess folder is set."""

from __future__ import annotations

import subprocess
import sys

import pytest
from prometheus_client import CollectorRegistry, Counter

from flashsale.metrics import MAX_COUPON_LABELS, OTHER_COUPONS, UNKNOWN_COUPON, Metrics


def test_claims_of_unknown_coupons_share_one_label() -> None:
    metrics = Metrics(CollectorRegistry())
    for i in range(50):
        metrics.count_claim(f"made-up-{i}", "not_found")
    metrics.count_claim("made-up-0", "unavailable")
    coupons = {sample.labels["coupon"] for sample in next(iter(metrics.claims.collect())).samples}
    assert coupons == {UNKNOWN_COUPON}


def test_coupon_labels_are_capped_per_process() -> None:
    metrics = Metrics(CollectorRegistry())
    for i in range(MAX_COUPON_LABELS + 10):
        metrics.count_claim(f"C{i}", "claimed")
    metrics.count_claim("C0", "sold_out")  # a coupon already labelled keeps its label
    samples = next(iter(metrics.claims.collect())).samples
    totals = {s.labels["coupon"]: s.value for s in samples if s.name.endswith("_total")}
    assert len(totals) == MAX_COUPON_LABELS + 1
    assert totals[OTHER_COUPONS] == 10


def test_a_coupon_past_the_cap_finds_its_shared_counter_without_labelling_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A sale of more coupons than the cap counts every claim of the others
    under OTHER_COUPONS: made once per outcome, then found in one look-up."""
    metrics = Metrics(CollectorRegistry())
    for i in range(MAX_COUPON_LABELS):
        metrics.count_claim(f"C{i}", "claimed")
    made: list[tuple[str, ...]] = []
    labels = metrics.claims.labels

    def counted_labels(*values: str) -> Counter:
        made.append(values)
        return labels(*values)

    monkeypatch.setattr(metrics.claims, "labels", counted_labels)
    for i in range(100):
        metrics.count_claim(f"LATE{i}", "sold_out")
        metrics.count_claim(f"made-up-{i}", "not_found")
    assert made == [(OTHER_COUPONS, "sold_out"), (UNKNOWN_COUPON, "not_found")]
    samples = next(iter(metrics.claims.collect())).samples
    totals = {
        (s.labels["coupon"], s.labels["outcome"]): s.value
        for s in samples
        if s.name.endswith("_total")
    }
    assert totals[(OTHER_COUPONS, "sold_out")] == 100
    assert totals[(UNKNOWN_COUPON, "not_found")] == 100


def test_the_command_line_does_not_import_prometheus_client() -> None:
    """prometheus_client picks per-process files or memory when first imported:
    `flashsale serve` must set PROMETHEUS_MULTIPROC_DIR before that happens."""
    probe = "import sys, flashsale.cli; sys.exit('prometheus_client' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], check=False).returncode == 0


def test_the_sales_outcomes_prove_the_coupon_exists_and_endings_are_counted() -> None:
    metrics = Metrics(CollectorRegistry())
    for outcome in ("not_started", "sale_ended", "paused"):
        metrics.count_claim("XMAS", outcome)
    metrics.count_claim_event("released")
    metrics.count_claim_event("expired", 3)
    metrics.count_claim_event("expired", 0)
    samples = next(iter(metrics.claims.collect())).samples
    counted = {(s.labels["coupon"], s.labels["outcome"]) for s in samples if s.value}
    assert counted == {("XMAS", "not_started"), ("XMAS", "sale_ended"), ("XMAS", "paused")}
    endings = next(iter(metrics.claim_endings.collect())).samples
    totals = {s.labels["event"]: s.value for s in endings if s.name.endswith("_total")}
    assert totals == {"released": 1, "expired": 3}
