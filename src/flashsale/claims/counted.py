"""Counts every claim's outcome in the metrics, around any strategy."""

from __future__ import annotations

from flashsale.claims.ports import ClaimStrategy, Key
from flashsale.domain import ClaimDecision, ReleaseDecision, ServiceUnavailable
from flashsale.metrics import Metrics


class CountedClaims:
    def __init__(self, inner: ClaimStrategy, metrics: Metrics) -> None:
        self._inner = inner
        self._metrics = metrics

    async def claim(self, *, coupon_name: str, user_id: str, key: Key = None) -> ClaimDecision:
        try:
            decision = await self._inner.claim(coupon_name=coupon_name, user_id=user_id, key=key)
        except ServiceUnavailable:
            self._metrics.count_claim(coupon_name, "unavailable")
            raise
        if not decision.replayed:  # a replay decided nothing new
            self._metrics.count_claim(coupon_name, decision.outcome.value)
        return decision

    async def release(self, *, coupon_name: str, user_id: str, key: Key = None) -> ReleaseDecision:
        return await self._inner.release(coupon_name=coupon_name, user_id=user_id, key=key)

    async def close(self) -> None:
        await self._inner.close()
