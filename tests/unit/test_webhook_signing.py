"""Signatures as a receiver verifies them (the Standard Webhooks reference
library, and the deprecated Flashsale-Signature), secrets in the whsec_
form, and the retry schedule."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from flashsale.service.signing import (
    is_secret,
    legacy_signature,
    new_secret,
    secret_key,
    signed_headers,
    verify_legacy,
)
from flashsale.service.webhook_ports import Failure
from flashsale.service.webhooks import RetryPolicy

KEY = b"0123456789abcdef0123456789abcdef"
SECRET = "whsec_" + base64.b64encode(KEY).decode()
OTHER = "whsec_" + base64.b64encode(b"x" * 24).decode()
BODY = b'{"id":1,"coupon_name":"X","seq":1}'


def test_the_signature_is_base64_hmac_sha256_of_id_dot_timestamp_dot_body() -> None:
    headers = signed_headers([SECRET], "17", 1764662400, BODY)
    digest = hmac.new(KEY, b"17.1764662400." + BODY, hashlib.sha256).digest()
    assert headers["webhook-signature"] == "v1," + base64.b64encode(digest).decode()
    assert (headers["webhook-id"], headers["webhook-timestamp"]) == ("17", "1764662400")


def test_the_reference_library_verifies_a_delivery_with_any_of_its_secrets() -> None:
    now = int(datetime.now(UTC).timestamp())
    headers = signed_headers([SECRET, OTHER], "42", now, BODY)
    assert Webhook(SECRET).verify(BODY, headers) == {"id": 1, "coupon_name": "X", "seq": 1}
    assert Webhook(OTHER).verify(BODY, headers)  # the previous secret, during a rotation
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(BODY + b" ", headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(BODY, signed_headers([SECRET], "42", now - 600, BODY))


def test_made_secrets_are_in_the_standard_form_and_differ() -> None:
    made = {new_secret() for _ in range(20)}
    assert len(made) == 20
    assert all(is_secret(secret) and len(secret_key(secret)) == 32 for secret in made)
    for refused in ("x" * 40, "whsec_" + base64.b64encode(b"short").decode(), "whsec_!!!!"):
        assert not is_secret(refused)


def test_the_deprecated_header_keeps_an_old_endpoints_secret_bytes_as_its_key() -> None:
    """A secret of before the webhook_signing migration is the key's bytes: the
    migration writes it whsec_ + base64 of them, and both headers verify."""
    old = b"my-old-secret-0123456789"
    migrated = "whsec_" + base64.b64encode(old).decode()
    headers = signed_headers([migrated], "5", 1_000_000, BODY)
    expected = hmac.new(old, b"1000000." + BODY, hashlib.sha256).hexdigest()
    assert headers["Flashsale-Signature"] == f"t=1000000,v1={expected}"
    assert verify_legacy(old, BODY, headers["Flashsale-Signature"], now=1_000_010)


def test_a_receiver_of_the_deprecated_header_refuses_anything_else() -> None:
    header = legacy_signature(KEY, BODY, 1_000_000)
    assert verify_legacy(KEY, BODY, header, now=1_000_010)
    assert not verify_legacy(KEY, BODY + b" ", header, now=1_000_010)  # body changed
    assert not verify_legacy(b"another-key-of-24-bytes!", BODY, header, now=1_000_010)
    assert not verify_legacy(KEY, BODY, header, now=1_000_301)  # a replay after five minutes
    assert not verify_legacy(KEY, BODY, header.replace("t=1000000", "t=1000100"), now=1_000_100)
    for broken in ("", "t=1000000", "v1=abc", "t=x,v1=abc", "garbage"):
        assert not verify_legacy(KEY, BODY, broken, now=1_000_000)


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
