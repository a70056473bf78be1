"""The webhooks bench's drain figures: measured when an endpoint drained,
extrapolated at the drain's rate when it did not, none when it never moves."""

from __future__ import annotations

from flashsale.bench.webhook_load import EndpointEnd


def end(drained_s: float | None, left: int) -> EndpointEnd:
    return EndpointEnd("e", 10_000, 8.0, drained_s, 0, left, 100.0, 10_000 - left)


def test_a_drained_endpoint_reports_its_measured_time() -> None:
    assert end(42.0, 0).drain_estimate_s == 42.0


def test_an_endpoint_still_draining_is_extrapolated_at_its_rate() -> None:
    slow = end(None, 6_000)  # 4,000 in 100 s: 40/s, 150 s more
    assert slow.rate == 40.0
    assert slow.drain_estimate_s == 250.0


def test_an_endpoint_that_never_moves_does_not_drain() -> None:
    assert end(None, 10_000).drain_estimate_s is None
