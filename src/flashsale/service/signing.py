"""Webhook signatures in the Standard Webhooks format, v1
(standardwebhooks.com): ``webhook-id`` (the event's id: a receiver
deduplicates on it), ``webhook-timestamp`` (unix seconds) and
``webhook-signature``, a space-separated list of ``v1,<base64 HMAC-SHA256 of
"<id>.<timestamp>.<body>">``, one per secret valid now (two while a rotation
lasts). A secret is ``whsec_`` and the base64 of its key's bytes.

Deprecated, sent for one more release: ``Flashsale-Event-Id`` and
``Flashsale-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">``
(Stripe's scheme), keyed with the current secret's key bytes: the same bytes
an endpoint registered before the webhook_signing migration was given as
its secret."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
LEGACY_SIGNATURE_HEADER = "Flashsale-Signature"  # deprecated
LEGACY_EVENT_ID_HEADER = "Flashsale-Event-Id"  # deprecated
SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
MIN_KEY_BYTES = 24
MAX_KEY_BYTES = 64
NEW_KEY_BYTES = 32
REPLAY_WINDOW_SECONDS = 300  # what the docs tell receivers to accept


def new_secret() -> str:
    """A fresh secret: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(NEW_KEY_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The key a ``whsec_`` secret stands for; ValueError for anything else."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("a secret starts with whsec_")
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except binascii.Error:
        raise ValueError("a secret is whsec_ and base64") from None
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise ValueError(f"a secret's key is {MIN_KEY_BYTES}-{MAX_KEY_BYTES} bytes")
    return key


def is_secret(value: str) -> bool:
    try:
        secret_key(value)
    except ValueError:
        return False
    return True


def signed_headers(
    valid_secrets: list[str], message_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The headers of one delivery: signed with every secret valid now,
    the current one first (it also keys the deprecated header)."""
    keys = [base64.b64decode(secret.removeprefix(SECRET_PREFIX)) for secret in valid_secrets]
    signed = f"{message_id}.{timestamp}.".encode() + body
    return {
        ID_HEADER: message_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: " ".join(f"v1,{_base64_digest(key, signed)}" for key in keys),
        LEGACY_EVENT_ID_HEADER: message_id,
        LEGACY_SIGNATURE_HEADER: legacy_signature(keys[0], body, timestamp),
    }


def legacy_signature(key: bytes, body: bytes, timestamp: int) -> str:
    """The deprecated header's value for ``body`` sent at ``timestamp``."""
    return f"t={timestamp},v1={_legacy_digest(key, body, timestamp)}"


def verify_legacy(
    key: bytes,
    body: bytes,
    header: str,
    *,
    now: float | None = None,
    tolerance: int = REPLAY_WINDOW_SECONDS,
) -> bool:
    """True when the deprecated ``header`` signs ``body`` with ``key`` and its
    time is within ``tolerance`` seconds of ``now`` (what a receiver did)."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    stamp = fields.get("t", "")
    if not stamp.isdigit() or "v1" not in fields:
        return False
    moment = time.time() if now is None else now
    if abs(moment - int(stamp)) > tolerance:
        return False
    return hmac.compare_digest(fields["v1"], _legacy_digest(key, body, int(stamp)))


def _base64_digest(key: bytes, signed: bytes) -> str:
    return base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def _legacy_digest(key: bytes, body: bytes, timestamp: int) -> str:
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(key, signed, hashlib.sha256).hexdigest()
