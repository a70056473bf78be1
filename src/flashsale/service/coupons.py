"""The write use cases: create and change a coupon, claim one, release and
redeem a claim, and the health check."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import replace

from flashsale.claims.ports import ClaimStrategy, Key
from flashsale.domain import (
    Caller,
    ClaimDecision,
    InvalidDrawAt,
    RaffleNeedsIdentities,
    ReleaseDecision,
    ReleaseOutcome,
)
from flashsale.service.deadline import deadline
from flashsale.service.ports import (
    Answer,
    ClaimView,
    CouponChange,
    CouponState,
    CouponWriter,
    NewCoupon,
    Once,
)

Actor = Caller | None  # who makes an admin change (recorded in its event)
HEALTH_TIMEOUT = 2.0  # a health check must answer before a load balancer gives up
RAFFLE = "raffle"
SEED_BYTES = 32  # the draw's secret (draw_rule.py): drawn here, committed at creation


class CouponService:
    def __init__(
        self,
        store: CouponWriter,
        claims: ClaimStrategy,
        *,
        request_timeout: float = 10.0,
        on_event: Callable[[str, int], None] | None = None,  # ("released"|"redeemed", n)
        identified: bool = True,  # whether claims come from identified users (not CLAIM_AUTH=open)
    ) -> None:
        self._identified = identified
        self._store = store
        self._claims = claims
        self.request_timeout = request_timeout
        self._on_event = on_event or (lambda _event, _count: None)

    async def create_coupon(
        self, coupon: NewCoupon, once: Once[CouponState] | None = None, *, actor: Actor = None
    ) -> CouponState | Answer:
        """``once``: under an Idempotency-Key (CouponWriter says how);
        ``actor``: who creates it, recorded in its event. A raffle gets its
        secret seed here (stored with the coupon, in its transaction)."""
        if coupon.allocation == RAFFLE:
            self._check_raffle(coupon.draw_at is not None)
            coupon = replace(coupon, seed=secrets.token_bytes(SEED_BYTES))
        elif coupon.draw_at is not None:
            raise InvalidDrawAt("draw_at is for a raffle (allocation: raffle)")
        async with deadline(self.request_timeout):
            return await self._store.create_coupon(coupon, once, actor=actor)

    def _check_raffle(self, has_draw_at: bool) -> None:
        if not self._identified:
            raise RaffleNeedsIdentities(
                "a raffle needs identified entrants: CLAIM_AUTH=open lets anyone enter as anyone"
            )
        if not has_draw_at:
            raise InvalidDrawAt("a raffle needs draw_at")

    async def change_coupon(
        self,
        name: str,
        change: CouponChange,
        once: Once[CouponState] | None = None,
        *,
        actor: Actor = None,
    ) -> CouponState | Answer:
        """A restock or cut, a new window, a pause or resume, a new hold; a
        raffle's allocation or draw_at, until the first entry."""
        if change.allocation == RAFFLE:
            self._check_raffle(True)  # change_raffle's CHECK wants draw_at
            change = replace(change, seed=secrets.token_bytes(SEED_BYTES))
        async with deadline(self.request_timeout):
            return await self._store.change_coupon(name, change, once, actor=actor)

    async def claim(self, *, coupon_name: str, user_id: str, key: Key = None) -> ClaimDecision:
        """Returns once the claim is decided and committed. Refusals are
        returned, not raised (domain.raise_for_outcome renders them), so that
        with a key a replayed refusal says it is one: the decision is the
        one stored with the key, this request's or (``replayed``) an earlier one's."""
        async with deadline(self.request_timeout):
            return await self._claims.claim(coupon_name=coupon_name, user_id=user_id, key=key)

    async def release_claim(
        self, *, coupon_name: str, user_id: str, key: Key = None, actor: Actor = None
    ) -> ReleaseDecision:
        """The unit is back in the stock when this returns RELEASED (committed,
        in the coupon's next claim batch); as ``claim``, refusals are returned.
        ``actor``: who releases it, recorded in its event."""
        async with deadline(self.request_timeout):
            decision = await self._claims.release(
                coupon_name=coupon_name, user_id=user_id, key=key, actor=actor
            )
        if decision.outcome is ReleaseOutcome.RELEASED and not decision.replayed:
            self._on_event("released", 1)
        return decision

    async def redeem_claim(
        self,
        *,
        coupon_name: str,
        user_id: str,
        once: Once[ClaimView] | None = None,
        actor: Actor = None,
    ) -> ClaimView | Answer:
        async with deadline(self.request_timeout):
            if once is None:
                claim = await self._store.redeem_claim(
                    coupon_name=coupon_name, user_id=user_id, actor=actor
                )
                self._on_event("redeemed", 1)
                return claim
            answer = await self._store.redeem_claim(
                coupon_name=coupon_name, user_id=user_id, once=once, actor=actor
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
