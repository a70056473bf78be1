"""The baseline strategy, as in the original design: every claim is its own
transaction, so every claim of a hot coupon waits for the row lock in turn."""

from __future__ import annotations

from flashsale.claims.ports import ClaimStore
from flashsale.domain import ClaimDecision


class TransactionPerClaim:
    def __init__(self, store: ClaimStore) -> None:
        self._store = store

    async def claim(self, *, coupon_name: str, user_id: str) -> ClaimDecision:
        return await self._store.claim_one(coupon_name=coupon_name, user_id=user_id)

    async def close(self) -> None:
        return None
