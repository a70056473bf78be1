"""The write use cases: create a coupon, claim one, and the health check."""

from __future__ import annotations

from flashsale.claims.ports import ClaimStrategy
from flashsale.domain import Coupon, raise_for_outcome
from flashsale.service.deadline import deadline
from flashsale.service.ports import CouponWriter

HEALTH_TIMEOUT = 2.0  # a health check must answer before a load balancer gives up


class CouponService:
    def __init__(
        self, store: CouponWriter, claims: ClaimStrategy, *, request_timeout: float = 10.0
    ) -> None:
        self._store = store
        self._claims = claims
        self.request_timeout = request_timeout

    async def create_coupon(self, *, name: str, amount: int) -> Coupon:
        async with deadline(self.request_timeout):
            await self._store.create_coupon(name=name, amount=amount)
        return Coupon(name=name, amount=amount, remaining_amount=amount, claimed_by=[])

    async def claim(self, *, coupon_name: str, user_id: str) -> None:
        """Returns once the claim is committed; raises the reason otherwise."""
        async with deadline(self.request_timeout):
            outcome = await self._claims.claim(coupon_name=coupon_name, user_id=user_id)
        raise_for_outcome(outcome, coupon_name=coupon_name, user_id=user_id)

    async def check_health(self) -> None:
        async with deadline(min(HEALTH_TIMEOUT, self.request_timeout)):
            await self._store.ping()

    async def close(self) -> None:
        """Claims already accepted finish first (graceful shutdown)."""
        await self._claims.close()
