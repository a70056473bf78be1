"""The claim limiter's parts (http/limits.py) on a hand-driven clock: the
token bucket, its table's bound, and whose X-Forwarded-For is believed."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from litestar.datastructures import State

from flashsale.config import SettingsError, load_settings, parse_networks
from flashsale.http.auth import configure_admin
from flashsale.http.limits import ClaimLimits, TokenBuckets, TrustedProxies
from tests.support.clock import HandClock


def test_a_bucket_lets_its_burst_through_then_one_per_refill() -> None:
    clock = HandClock(1000.0)
    buckets = TokenBuckets(rate=2, burst=3, size=10, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0, 0, 0]
    assert buckets.take("a") == pytest.approx(0.5)  # one token comes in 1/rate s
    clock.now += 0.5
    assert buckets.take("a") == 0
    assert buckets.take("a") > 0
    assert buckets.take("b") == 0  # another key has its own bucket


def test_a_bucket_saves_up_no_more_than_its_burst() -> None:
    clock = HandClock(1000.0)
    buckets = TokenBuckets(rate=1, burst=2, size=10, clock=clock)
    buckets.take("a")
    clock.now += 3600
    assert [buckets.take("a") == 0 for _ in range(3)] == [True, True, False]


def test_refused_attempts_do_not_push_the_next_token_further_away() -> None:
    clock = HandClock(1000.0)
    buckets = TokenBuckets(rate=1, burst=1, size=10, clock=clock)
    buckets.take("a")
    for _ in range(100):
        buckets.take("a")
    clock.now += 1
    assert buckets.take("a") == 0


def test_the_table_never_holds_more_than_its_size() -> None:
    clock = HandClock(1000.0)
    buckets = TokenBuckets(rate=1, burst=5, size=100, clock=clock)
    for n in range(10_000):
        buckets.take(f"client-{n}")
        assert len(buckets) <= 100


def test_past_its_size_refilled_buckets_go_first_then_the_oldest() -> None:
    clock = HandClock(1000.0)
    buckets = TokenBuckets(rate=1, burst=2, size=8, clock=clock)
    for n in range(4):
        buckets.take(f"idle-{n}")
    clock.now += 10  # the idle ones have refilled: dropping them loses nothing
    for n in range(4):
        buckets.take(f"busy-{n}")
        buckets.take(f"busy-{n}")  # empty now
    buckets.take("new")
    assert len(buckets) == 5
    assert all(buckets.take(f"busy-{n}") > 0 for n in range(4))  # still remembered
    for n in range(8):  # the table fills with active clients: the oldest go
        buckets.take(f"more-{n}")
    assert len(buckets) <= 8
    assert buckets.take("busy-0") == 0  # forgotten: starts afresh


def test_an_untrusted_peer_is_the_client_whatever_it_forwards() -> None:
    proxies = TrustedProxies(tuple(parse_networks("10.0.0.0/8")))
    assert proxies.client_address("192.0.2.7", [b"203.0.113.1"]) == "192.0.2.7"
    nobody = TrustedProxies(())
    assert nobody.client_address("10.0.0.1", [b"203.0.113.1"]) == "10.0.0.1"


def test_behind_a_trusted_proxy_the_rightmost_untrusted_hop_is_the_client() -> None:
    proxies = TrustedProxies(tuple(parse_networks("10.0.0.0/8, 2001:db8::/32")))
    # The client wrote "1.1.1.1" itself; the proxy appended what it saw.
    assert proxies.client_address("10.0.0.1", [b"1.1.1.1, 203.0.113.9"]) == "203.0.113.9"
    assert proxies.client_address("10.0.0.1", [b"1.1.1.1", b"203.0.113.9, 10.2.2.2"]) == (
        "203.0.113.9"
    )
    assert proxies.client_address("10.0.0.1", [b"10.3.3.3"]) == "10.3.3.3"  # all trusted
    assert proxies.client_address("10.0.0.1", []) == "10.0.0.1"
    assert proxies.client_address("10.0.0.1", [b"not-an-address"]) == "10.0.0.1"


def test_trusted_proxies_must_be_cidrs() -> None:
    with pytest.raises(SettingsError, match="TRUSTED_PROXIES: 'nope' is not a CIDR"):
        load_settings({"TRUSTED_PROXIES": "10.0.0.0/8,nope"})


def scope(peer: str, *headers: tuple[bytes, bytes]) -> Any:
    return {"type": "http", "client": (peer, 1234), "headers": list(headers)}


def test_the_operator_is_never_limited_and_anonymous_callers_are_by_address() -> None:
    clock = HandClock(1000.0)
    settings = load_settings({"CLAIM_RATE": "1", "CLAIM_BURST": "1", "ADMIN_TOKEN": "s3cret"})
    state = State()
    configure_admin(state, settings)
    limits = ClaimLimits(settings, clock)
    admin = (b"authorization", b"Bearer s3cret")
    assert [limits.refused(scope("192.0.2.1", admin), state) for _ in range(5)] == [None] * 5
    assert limits.refused(scope("192.0.2.1"), state) is None
    refused = limits.refused(scope("192.0.2.1", (b"authorization", b"Bearer wrong")), state)
    assert refused is not None
    status, headers, body = refused
    assert status == 429
    assert dict(headers) == {b"content-type": b"application/json", b"retry-after": b"1"}
    assert msgspec.json.decode(body)["error"] == "rate_limited"
    assert limits.refused(scope("192.0.2.2"), state) is None  # another address
