"""The metrics' labels stay few (unknown coupons share one, coupons are
capped per process), and prometheus_client is imported only once its
multiprocess folder is set."""

from __future__ import annotations

import subprocess
import sys

from prometheus_client import CollectorRegistry

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


def test_the_command_line_does_not_import_prometheus_client() -> None:
    """prometheus_client picks per-process files or memory when first imported:
    `flashsale serve` must set PROMETHEUS_MULTIPROC_DIR before that happens."""
    probe = "import sys, flashsale.cli; sys.exit('prometheus_client' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], check=False).returncode == 0
