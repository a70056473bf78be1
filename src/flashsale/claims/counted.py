"""Counts every claim's outcome in the metrics, around any strategy."""

from __future__ import annotations

from flashsale.claims.ports import ClaimStrategy
from flashsale.domain import ClaimDecision, ReleaseOutcome, ServiceUnavailable
from flashsale.metrics import Metrics


class CountedClaims:
    def __init__(self, inner: ClaimStrategy, metrics: Metrics) -> None:
        self._inner = inner
        self._metrics = metrics

    async def claim(self, *, coupon_name: str, user_id: str) -> ClaimDecision:
        try:
            decision = await self._inner.claim(coupon_name=coupon_name, user_id=user_id)
        except ServiceUnavailable:
            self._metrics.count_claim(coupon_name, "unavailable")
            raise
        self._metrics.count_claim(coupon_name, decision.outcome.value)
        return decision

    async def release(self, *, coupon_name: str, user_id: str) -> ReleaseOutcome:
        return await self._inner.release(coupon_name=coupon_name, user_id=user_id)

    async def close(self) -> None:
        await self._inner.close()
