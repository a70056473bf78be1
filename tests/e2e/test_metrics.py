"""/metrics: claims by outcome per coupon, batch sizes, request latency by
route and pool use, added up over every worker process of a live server."""

from __future__ import annotations

import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

from flashsale.bench.server import RunningServer
from flashsale.metrics import UNKNOWN_COUPON
from tests.support.load import claim_all, create_coupon, outcomes

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(base_url: str) -> Samples:
    response = httpx.get(f"{base_url}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_metrics_add_up_claims_and_batches_over_both_workers(
    live_server: RunningServer,
) -> None:
    base = live_server.base_url
    await create_coupon(base, "METERED", 20)
    users = [f"user-{i}" for i in range(30)]
    first = await claim_all([base], "METERED", users)
    again = await claim_all([base], "METERED", users)
    missing = await claim_all([base], "NO_SUCH_COUPON", users[:3])
    assert outcomes(first) == {"ok": 20, "409 sold_out": 10}
    assert outcomes(again) == {"409 already_claimed": 20, "409 sold_out": 10}
    assert outcomes(missing) == {"404 coupon_not_found": 3}

    samples = scrape(base)
    claims = "flashsale_claims_total"
    assert value(samples, claims, coupon="METERED", outcome="claimed") == 20
    assert value(samples, claims, coupon="METERED", outcome="already_claimed") == 20
    assert value(samples, claims, coupon="METERED", outcome="sold_out") == 20
    assert value(samples, claims, coupon=UNKNOWN_COUPON, outcome="not_found") == 3
    # Every claim went through at least one batch (a stale sold-out hint sends
    # a claim through both lanes).
    batched = sum(
        value(samples, "flashsale_claim_batch_size_sum", lane=lane)
        for lane in ("claim", "sold_out")
    )
    assert batched >= 63
    assert value(samples, "flashsale_claim_batch_size_count", lane="claim") >= 1
    # The claim lane's batches, per lane (one lane per worker: lane "0").
    lane_batches = value(samples, "flashsale_claim_lane_batch_size_count", lane="0")
    assert lane_batches >= 1
    assert value(samples, "flashsale_claim_lane_batch_coupons_count", lane="0") == lane_batches
    assert value(samples, "flashsale_claim_lane_wait_seconds_count", lane="0") == lane_batches
    latency = "flashsale_http_request_duration_seconds_count"
    assert value(samples, latency, method="POST", route="/api/coupons/claim", status="200") == 20
    assert value(samples, latency, method="POST", route="/api/coupons/claim", status="409") == 40
    # Each worker samples its own pool (DB_POOL_MAX=8 in tests): two workers, 16.
    # The server answers once one worker is up; the other may still be starting.
    assert pool_max_over_workers(base) == 16


def pool_max_over_workers(base_url: str, wait_seconds: float = 15.0) -> float:
    """The summed pool gauge once every worker has sampled its pool."""
    deadline = time.monotonic() + wait_seconds
    while True:
        found = value(scrape(base_url), "flashsale_db_pool_max_connections")
        if found >= 16 or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_latency_is_labelled_by_route_template_not_raw_path(live_server: RunningServer) -> None:
    base = live_server.base_url
    for name in ("A1", "B2", "C3"):
        httpx.get(f"{base}/api/coupons/{name}", timeout=10)
    samples = scrape(base)
    latency = "flashsale_http_request_duration_seconds_count"
    assert value(samples, latency, method="GET", route="/api/coupons/{name}", status="404") == 3
    assert not any("A1" in str(labels) for _, labels in samples)
