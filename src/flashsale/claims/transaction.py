"""The baseline strategy, as in the original design: every claim is its own
transaction, so every claim of a hot coupon waits for the row lock in turn."""

from __future__ import annotations

from flashsale.claims.ports import ClaimStore, Key
from flashsale.domain import ClaimDecision, IdempotencyKey, ReleaseDecision, ReleaseOutcome


class TransactionPerClaim:
    def __init__(self, store: ClaimStore) -> None:
        self._store = store

    async def claim(self, *, coupon_name: str, user_id: str, key: Key = None) -> ClaimDecision:
        return await self._store.claim_one(coupon_name=coupon_name, user_id=user_id, key=key)

    async def release(self, *, coupon_name: str, user_id: str) -> ReleaseOutcome:
        """One release, one transaction of its own."""
        result = await self._store.claim_many(coupon_name, (), (user_id,))
        return result.releases[0]

    async def release_once(
        self, *, coupon_name: str, user_id: str, key: IdempotencyKey
    ) -> ReleaseDecision:
        result = await self._store.claim_many(coupon_name, (), (user_id,), release_keys=(key,))
        decision = result.keyed_releases[0]
        assert decision is not None
        return decision

    async def close(self) -> None:
        return None
