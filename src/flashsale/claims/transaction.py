"""The baseline strategy, as in the original design: every claim is its own
transaction, so every claim of a hot coupon waits for the row lock in turn."""

from __future__ import annotations

from flashsale.claims.ports import ClaimStore, Key
from flashsale.domain import Caller, ClaimDecision, ReleaseDecision


class TransactionPerClaim:
    def __init__(self, store: ClaimStore) -> None:
        self._store = store

    async def claim(self, *, coupon_name: str, user_id: str, key: Key = None) -> ClaimDecision:
        return await self._store.claim_one(coupon_name=coupon_name, user_id=user_id, key=key)

    async def release(
        self, *, coupon_name: str, user_id: str, key: Key = None, actor: Caller | None = None
    ) -> ReleaseDecision:
        """One release, one transaction of its own, its event naming ``actor``."""
        actors = (actor,)
        if key is None:
            result = await self._store.decide_batch(
                coupon_name, (), (user_id,), release_actors=actors
            )
            return ReleaseDecision(result.releases[0])
        keyed = await self._store.decide_batch(
            coupon_name, (), (user_id,), release_keys=(key,), release_actors=actors
        )
        decision = keyed.keyed_releases[0]
        assert decision is not None
        return decision

    async def close(self) -> None:
        return None
