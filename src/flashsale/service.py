"""The use cases: what the HTTP layer (or any other entry point) can ask for."""

from __future__ import annotations

from flashsale.claims.ports import ClaimStrategy
from flashsale.domain import Coupon, CouponNotFound, raise_for_outcome
from flashsale.storage.store import CouponStore


class CouponService:
    def __init__(self, store: CouponStore, claims: ClaimStrategy) -> None:
        self.store = store
        self.claims = claims

    async def create_coupon(self, name: str, amount: int) -> Coupon:
        await self.store.create_coupon(name, amount)
        return Coupon(name=name, amount=amount, remaining_amount=amount, claimed_by=[])

    async def claim(self, coupon_name: str, user_id: str) -> None:
        """Returns once the claim is committed; raises the reason otherwise."""
        outcome = await self.claims.claim(coupon_name, user_id)
        raise_for_outcome(outcome, coupon_name, user_id)

    async def get_coupon(self, name: str) -> Coupon:
        coupon = await self.store.get_coupon(name)
        if coupon is None:
            raise CouponNotFound(f"coupon {name!r} does not exist")
        return coupon

    async def check_health(self) -> None:
        await self.store.ping()

    async def close(self) -> None:
        await self.claims.close()
