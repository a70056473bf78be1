"""What the claim engine needs from storage, and what it gets back. The store
in flashsale.storage implements ClaimStore; the engine never imports storage."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from flashsale.domain import (
    Caller,
    ClaimDecision,
    ClaimOutcome,
    IdempotencyKey,
    ReleaseDecision,
    ReleaseOutcome,
)

Key = IdempotencyKey | None  # an arrival's Idempotency-Key, if it sent one


@dataclass(frozen=True, slots=True)
class BatchResult:
    """Outcomes in input order, the coupon as the batch left it, and the
    times of the claims it granted (one decision time for the whole batch)."""

    outcomes: list[ClaimOutcome]
    coupon_id: int | None
    remaining: int | None
    claimed_at: datetime | None = None
    expires_at: datetime | None = None
    releases: list[ReleaseOutcome] = field(default_factory=list)  # in the input's order
    # Keyed arrivals' decisions as stored with their keys (None: no key), in
    # the input's order; empty when the batch had no key.
    keyed_claims: list[ClaimDecision | None] = field(default_factory=list)
    keyed_releases: list[ReleaseDecision | None] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class CouponPart:
    """One coupon's part of a batch across coupons: its claims (user ids in
    arrival order, repeats allowed) and its releases, with who sent each
    (parallel to ``releases``, or empty: nobody named), and their
    Idempotency-Keys (parallel to ``user_ids`` and ``releases``, or empty:
    none), as decide_batch takes them: a keyed user arrives once per kind."""

    coupon_name: str
    user_ids: Sequence[str]
    releases: Sequence[str] = ()
    release_actors: Sequence[Caller | None] = ()
    claim_keys: Sequence[Key] = ()
    release_keys: Sequence[Key] = ()

    def has_keys(self) -> bool:
        return any(self.claim_keys) or any(self.release_keys)


# A part's result, or the error that deciding it on its own raised.
PartResult = BatchResult | Exception


@dataclass(frozen=True, slots=True)
class SoldOutRead:
    """Who among the users holds the coupon, and the coupon as read: its
    stock (due holds counted as returned) and why the sale is closed, if it is."""

    holds: list[bool]
    coupon_id: int | None
    remaining: int | None
    refusal: ClaimOutcome | None = None


class ClaimStore(Protocol):
    async def decide_batch(
        self,
        coupon_name: str,
        user_ids: Sequence[str],
        releases: Sequence[str] = (),
        claim_keys: Sequence[Key] = (),
        release_keys: Sequence[Key] = (),
        *,
        release_actors: Sequence[Caller | None] = (),
    ) -> BatchResult:
        """Releases first, then claims, in one transaction under the coupon's
        lock; each released hold's event names its release's actor
        (``release_actors``, parallel to ``releases``, or empty: nobody).
        ``claim_keys`` and ``release_keys`` (parallel to ``user_ids`` and
        ``releases``, or empty) are stored with their decisions in the same
        transaction; an arrival whose key was stored before is not decided
        again. A keyed user must have no other arrival of its kind in the call."""

    async def decide_coupons(self, parts: Sequence[CouponPart]) -> list[PartResult]:
        """decide_batch for several coupons (distinct names) in one
        transaction, each part under its coupon's lock, keys included (each
        keyed part's decisions as decide_batch's), results in order.
        When one part makes the whole transaction fail, each part is decided
        in a transaction of its own, and a part that fails then gets its
        error. A failure of the database as a whole raises, as decide_batch."""

    async def sold_out_batch(self, coupon_name: str, user_ids: Sequence[str]) -> SoldOutRead: ...

    async def sold_out_coupons(self, parts: Sequence[CouponPart]) -> list[SoldOutRead]:
        """sold_out_batch for several coupons (distinct names) in one read,
        in order (a part's releases are ignored)."""

    async def claim_one(
        self, *, coupon_name: str, user_id: str, key: Key = None
    ) -> ClaimDecision: ...


class ClaimStrategy(Protocol):
    """Decides one user's claim on one coupon; a ClaimDecision, or
    ServiceUnavailable when the database or the queue cannot take it."""

    async def claim(self, *, coupon_name: str, user_id: str, key: Key = None) -> ClaimDecision:
        """With a key: the decision stored with it (``replayed`` when an
        earlier request's), KEY_REUSED when it came with another request."""

    async def release(
        self, *, coupon_name: str, user_id: str, key: Key = None, actor: Caller | None = None
    ) -> ReleaseDecision:
        """Gives a live hold's unit back; committed when this returns; its
        event names ``actor``. With a key, as ``claim`` with one."""

    async def close(self) -> None:
        """Finish the claims already accepted (graceful shutdown)."""
