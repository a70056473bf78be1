"""Flashsale-Signature: what a receiver verifies, and the retry schedule."""

from __future__ import annotations

import hashlib
import hmac

from flashsale.service.ports import Failure
from flashsale.service.signing import signature, verify
from flashsale.service.webhooks import RetryPolicy

SECRET = "whsec_0123456789abcdef"
BODY = b'{"id":1,"coupon_name":"X","seq":1}'


def test_the_signature_is_hmac_sha256_of_the_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET.encode(), b"1764662400." + BODY, hashlib.sha256).hexdigest()
    assert signature(SECRET, BODY, 1764662400) == f"t=1764662400,v1={expected}"


def test_a_receiver_accepts_a_fresh_signature_and_refuses_anything_else() -> None:
    header = signature(SECRET, BODY, 1_000_000)
    assert verify(SECRET, BODY, header, now=1_000_010)
    assert not verify(SECRET, BODY + b" ", header, now=1_000_010)  # body changed
    assert not verify("whsec_another-secret!", BODY, header, now=1_000_010)
    assert not verify(SECRET, BODY, header, now=1_000_301)  # a replay after five minutes
    assert not verify(SECRET, BODY, header.replace("t=1000000", "t=1000100"), now=1_000_100)
    for broken in ("", "t=1000000", "v1=abc", "t=x,v1=abc", "garbage"):
        assert not verify(SECRET, BODY, broken, now=1_000_000)


def test_retries_back_off_exponentially_with_jitter_up_to_the_ceiling() -> None:
    policy = RetryPolicy(base=5, most=3600)
    for attempts, ceiling in ((1, 5), (2, 10), (3, 20), (10, 2560), (11, 3600), (200, 3600)):
        delays = {policy.delay(attempts) for _ in range(50)}
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays), attempts
        assert len(delays) > 1  # jittered


def test_an_endpoint_is_given_up_on_after_its_attempts_or_its_hours() -> None:
    policy = RetryPolicy(max_attempts=40, give_up_after=24 * 3600)
    assert not policy.gives_up(Failure(39, 3600))
    assert policy.gives_up(Failure(40, 3600))
    assert policy.gives_up(Failure(3, 24 * 3600))


def test_the_default_schedule_spans_about_a_day() -> None:
    policy = RetryPolicy()
    ceilings = [min(policy.most, policy.base * 2 ** (n - 1)) for n in range(1, policy.max_attempts)]
    shortest, longest = sum(c / 2 for c in ceilings), sum(ceilings)
    assert 12 * 3600 < shortest < 24 * 3600 < longest < 48 * 3600
