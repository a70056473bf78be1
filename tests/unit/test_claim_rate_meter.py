"""Claims per second on the dashboard, from the claimed counts seen at each poll."""

from __future__ import annotations

import pytest

from flashsale.service.dashboard import ClaimRateMeter, tiles
from flashsale.service.ports import CouponActivity


def test_the_first_poll_has_no_rate_yet() -> None:
    assert ClaimRateMeter().observe(0.0, {"A": 10}) == {}


def test_the_rate_is_the_growth_over_the_window() -> None:
    meter = ClaimRateMeter(window=3.0)
    meter.observe(0.0, {"A": 0})
    meter.observe(1.0, {"A": 50})
    assert meter.observe(2.0, {"A": 100}) == {"A": pytest.approx(50.0)}


def test_polls_older_than_the_window_stop_counting() -> None:
    meter = ClaimRateMeter(window=2.0)
    meter.observe(0.0, {"A": 0})
    meter.observe(1.0, {"A": 100})
    meter.observe(3.0, {"A": 100})
    # The sale paused after t=1: by t=5 the window [3, 5] holds no claims.
    assert meter.observe(5.0, {"A": 100}) == {"A": 0.0}


def test_a_coupon_appearing_between_polls_starts_at_zero() -> None:
    meter = ClaimRateMeter()
    meter.observe(0.0, {"A": 5})
    assert meter.observe(1.0, {"A": 5, "NEW": 7}) == {"A": 0.0, "NEW": 0.0}


def test_a_recreated_coupon_never_shows_a_negative_rate() -> None:
    meter = ClaimRateMeter()
    meter.observe(0.0, {"A": 90})
    assert meter.observe(1.0, {"A": 0}) == {"A": 0.0}


def test_the_busiest_coupons_come_first() -> None:
    activity = [
        CouponActivity("RECENT", 10, 9, ["u"]),
        CouponActivity("BUSY", 100, 50, ["v", "w"]),
        CouponActivity("IDLE", 5, 5, []),
    ]
    shown = tiles(activity, {"RECENT": 1.0, "BUSY": 40.0})
    assert [tile.name for tile in shown] == ["BUSY", "RECENT", "IDLE"]
    assert shown[0].recent_claimers == ["v", "w"]
