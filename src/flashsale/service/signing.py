"""Webhook signatures: ``Flashsale-Signature: t=<unix seconds>,v1=<hex>``,
where the hex is HMAC-SHA256 of ``"<t>.<body>"`` keyed with the endpoint's
secret (Stripe's scheme). The timestamp is inside the signed text, so a
receiver that rejects old ``t`` values rejects replayed deliveries too."""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "Flashsale-Signature"
EVENT_ID_HEADER = "Flashsale-Event-Id"
REPLAY_WINDOW_SECONDS = 300  # what the README tells receivers to accept


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """The header's value for ``body`` sent at ``timestamp``."""
    return f"t={timestamp},v1={_digest(secret, body, timestamp)}"


def verify(
    secret: str,
    body: bytes,
    header: str,
    *,
    now: float | None = None,
    tolerance: int = REPLAY_WINDOW_SECONDS,
) -> bool:
    """True when ``header`` signs ``body`` with ``secret`` and its time is
    within ``tolerance`` seconds of ``now`` (what a receiver does)."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    stamp = fields.get("t", "")
    if not stamp.isdigit() or "v1" not in fields:
        return False
    moment = time.time() if now is None else now
    if abs(moment - int(stamp)) > tolerance:
        return False
    return hmac.compare_digest(fields["v1"], _digest(secret, body, int(stamp)))


def _digest(secret: str, body: bytes, timestamp: int) -> str:
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
