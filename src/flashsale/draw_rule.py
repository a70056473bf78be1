"""The raffle's public draw rule: what anyone can recompute from what the API publishes.

The rule is fixed (issue 27): the coupon publishes ``draw_commitment`` = hex SHA-256 of a
32-byte secret seed at creation and the seed itself after the draw; each entrant is
published as the SHA-256 of its user id in UTF-8; entrants are ordered by
HMAC-SHA256(key = seed, message = the entrant digest's 32 bytes), ascending by the
ticket's bytes, ties (never seen in practice) broken by the digest's bytes so the order
is total. The first ``amount`` win, the rest form the waitlist in that order.

Standard library only: the server's SQL draw and ``flashsale verify-draw`` both hold
themselves against this module.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable


def commitment(seed: bytes) -> str:
    """The hex SHA-256 of the seed, published before the draw."""
    return hashlib.sha256(seed).hexdigest()


def entrant_digest(user_id: str) -> bytes:
    """The SHA-256 of a user id in UTF-8: how an entrant is published."""
    return hashlib.sha256(user_id.encode("utf-8")).digest()


def ticket(seed: bytes, digest: bytes) -> bytes:
    """HMAC-SHA256 keyed by the seed over the entrant digest's 32 bytes."""
    return hmac.new(seed, digest, hashlib.sha256).digest()


def draw_order(seed: bytes, digests: Iterable[bytes]) -> list[bytes]:
    """The digests in draw order: ascending by ticket, then by digest."""
    return sorted(digests, key=lambda digest: (ticket(seed, digest), digest))
