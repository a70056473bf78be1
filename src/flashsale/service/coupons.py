"""The write use cases: create and change a coupon, claim one, release and
redeem a claim, and the health check."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from flashsale.claims.ports import ClaimStrategy
from flashsale.domain import (
    ClaimDecision,
    IdempotencyKey,
    ReleaseDecision,
    ReleaseOutcome,
    raise_for_outcome,
    raise_for_release,
)
from flashsale.service.deadline import deadline
from flashsale.service.ports import (
    Answer,
    ClaimView,
    CouponChange,
    CouponState,
    CouponWriter,
    Once,
)

HEALTH_TIMEOUT = 2.0  # a health check must answer before a load balancer gives up


class CouponService:
    def __init__(
        self,
        store: CouponWriter,
        claims: ClaimStrategy,
        *,
        request_timeout: float = 10.0,
        on_event: Callable[[str, int], None] | None = None,  # ("released"|"redeemed", n)
    ) -> None:
        self._store = store
        self._claims = claims
        self.request_timeout = request_timeout
        self._on_event = on_event or (lambda _event, _count: None)

    async def create_coupon(
        self,
        *,
        name: str,
        amount: int,
        starts_at: datetime | None = None,
        ends_at: datetime | None = None,
        hold_seconds: int | None = None,
    ) -> CouponState:
        async with deadline(self.request_timeout):
            return await self._store.create_coupon(
                name=name,
                amount=amount,
                starts_at=starts_at,
                ends_at=ends_at,
                hold_seconds=hold_seconds,
            )

    async def change_coupon(self, name: str, change: CouponChange) -> CouponState:
        """A restock or cut, a new window, a pause or resume, a new hold."""
        async with deadline(self.request_timeout):
            return await self._store.change_coupon(name, change)

    async def claim(self, *, coupon_name: str, user_id: str) -> ClaimDecision:
        """Returns once the claim is committed (with its times); raises the
        reason otherwise."""
        async with deadline(self.request_timeout):
            decision = await self._claims.claim(coupon_name=coupon_name, user_id=user_id)
        raise_for_outcome(decision.outcome, coupon_name=coupon_name, user_id=user_id)
        return decision

    async def release_claim(self, *, coupon_name: str, user_id: str) -> None:
        """The unit is back in the stock when this returns (committed, in the
        coupon's next claim batch); raises why not otherwise."""
        async with deadline(self.request_timeout):
            outcome = await self._claims.release(coupon_name=coupon_name, user_id=user_id)
        raise_for_release(outcome, coupon_name=coupon_name, user_id=user_id)
        self._on_event("released", 1)

    async def redeem_claim(self, *, coupon_name: str, user_id: str) -> ClaimView:
        async with deadline(self.request_timeout):
            claim = await self._store.redeem_claim(coupon_name=coupon_name, user_id=user_id)
        self._on_event("redeemed", 1)
        return claim

    # The writes under an Idempotency-Key (CouponWriter says how they differ).

    async def create_coupon_once(
        self,
        once: Once[CouponState],
        *,
        name: str,
        amount: int,
        starts_at: datetime | None = None,
        ends_at: datetime | None = None,
        hold_seconds: int | None = None,
    ) -> Answer:
        async with deadline(self.request_timeout):
            return await self._store.create_coupon_once(
                once,
                name=name,
                amount=amount,
                starts_at=starts_at,
                ends_at=ends_at,
                hold_seconds=hold_seconds,
            )

    async def change_coupon_once(
        self, once: Once[CouponState], name: str, change: CouponChange
    ) -> Answer:
        async with deadline(self.request_timeout):
            return await self._store.change_coupon_once(once, name, change)

    async def claim_once(
        self, *, coupon_name: str, user_id: str, key: IdempotencyKey
    ) -> ClaimDecision:
        """The decision stored with the key, this request's or (``replayed``)
        an earlier one's; refusals are returned, not raised, so that a
        replayed refusal says it is one (domain.raise_for_outcome renders them)."""
        async with deadline(self.request_timeout):
            return await self._claims.claim(coupon_name=coupon_name, user_id=user_id, key=key)

    async def release_claim_once(
        self, *, coupon_name: str, user_id: str, key: IdempotencyKey
    ) -> ReleaseDecision:
        """As claim_once, for a release (in the coupon's claim batch)."""
        async with deadline(self.request_timeout):
            decision = await self._claims.release_once(
                coupon_name=coupon_name, user_id=user_id, key=key
            )
        if decision.outcome is ReleaseOutcome.RELEASED and not decision.replayed:
            self._on_event("released", 1)
        return decision

    async def redeem_claim_once(
        self, once: Once[ClaimView], *, coupon_name: str, user_id: str
    ) -> Answer:
        async with deadline(self.request_timeout):
            answer = await self._store.redeem_claim_once(
                once, coupon_name=coupon_name, user_id=user_id
            )
        self._count("redeemed", answer)
        return answer

    def _count(self, event: str, answer: Answer) -> None:
        """A keyed write's event, once: not for a replay nor a refusal."""
        if not answer.replayed and answer.status < 300:
            self._on_event(event, 1)

    async def check_health(self) -> None:
        async with deadline(min(HEALTH_TIMEOUT, self.request_timeout)):
            await self._store.ping()

    async def close(self) -> None:
        """Claims already accepted finish first (graceful shutdown)."""
        await self._claims.close()
