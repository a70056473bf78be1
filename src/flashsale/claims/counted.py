"""Counts every claim's outcome in the metrics, around any strategy, and the
claims in flight (background work such as webhook deliveries yields to them)."""

from __future__ import annotations

from flashsale.claims.ports import ClaimStrategy, Key
from flashsale.domain import Caller, ClaimDecision, ReleaseDecision, ServiceUnavailable
from flashsale.metrics import Metrics


class CountedClaims:
    def __init__(self, inner: ClaimStrategy, metrics: Metrics) -> None:
        self._inner = inner
        self._metrics = metrics
        self.in_flight = 0

    def busy(self) -> bool:
        return self.in_flight > 0

    async def claim(self, *, coupon_name: str, user_id: str, key: Key = None) -> ClaimDecision:
        self.in_flight += 1
        try:
            decision = await self._inner.claim(coupon_name=coupon_name, user_id=user_id, key=key)
        except ServiceUnavailable:
            self._metrics.count_claim(coupon_name, "unavailable")
            raise
        finally:
            self.in_flight -= 1
        if not decision.replayed:  # a replay decided nothing new
            self._metrics.count_claim(coupon_name, decision.outcome.value)
        return decision

    async def release(
        self, *, coupon_name: str, user_id: str, key: Key = None, actor: Caller | None = None
    ) -> ReleaseDecision:
        return await self._inner.release(
            coupon_name=coupon_name, user_id=user_id, key=key, actor=actor
        )

    async def close(self) -> None:
        await self._inner.close()
