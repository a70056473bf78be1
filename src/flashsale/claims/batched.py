"""The default strategy: concurrent claims for one coupon share a transaction.

Two lanes per coupon, each a Coalescer:
- the claim lane runs ``claim_many``, which takes the coupon's row lock;
- the sold-out lane, used once this process has seen the coupon sold out,
  runs ``sold_out_batch``, a plain snapshot read that never touches the lock.

The sold-out hint is keyed by the coupon's identity, and it is only a hint:
the lock-free read returns the coupon's id and stock, and if the coupon was
recreated under the same name or has stock again, the claims go back through
the claim lane, whose answer is authoritative.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

from flashsale.claims.coalescer import Coalescer
from flashsale.claims.ports import ClaimStore
from flashsale.domain import ClaimOutcome


class BatchedClaims:
    def __init__(
        self,
        store: ClaimStore,
        *,
        max_batch: int,
        max_queue: int,
        on_batch: Callable[[str, int], None] | None = None,  # (lane, size), for metrics
    ) -> None:
        self._store = store
        self._sold_out: dict[str, int] = {}  # coupon name -> id of the coupon seen sold out
        self._claim_lane: Coalescer[str, str, ClaimOutcome] = Coalescer(
            self._claim_many,
            max_batch=max_batch,
            max_queue=max_queue,
            on_batch=partial(on_batch, "claim") if on_batch else None,
        )
        self._sold_out_lane: Coalescer[str, str, ClaimOutcome | None] = Coalescer(
            self._sold_out_batch,
            max_batch=max_batch,
            max_queue=max_queue,
            on_batch=partial(on_batch, "sold_out") if on_batch else None,
        )

    async def claim(self, *, coupon_name: str, user_id: str) -> ClaimOutcome:
        if coupon_name in self._sold_out:
            outcome = await self._sold_out_lane.submit(coupon_name, user_id)
            if outcome is not None:
                return outcome
        return await self._claim_lane.submit(coupon_name, user_id)

    async def _claim_many(self, coupon_name: str, users: Sequence[str]) -> list[ClaimOutcome]:
        result = await self._store.claim_many(coupon_name, users)
        if result.coupon_id is not None and result.remaining == 0:
            self._sold_out[coupon_name] = result.coupon_id
        return result.outcomes

    async def _sold_out_batch(
        self, coupon_name: str, users: Sequence[str]
    ) -> list[ClaimOutcome | None]:
        """Outcomes for a coupon believed sold out; None sends a claim back to
        the claim lane because the belief turned out stale."""
        read = await self._store.sold_out_batch(coupon_name, users)
        if read.coupon_id is None:
            self._sold_out.pop(coupon_name, None)
            return [ClaimOutcome.NOT_FOUND] * len(users)
        if read.coupon_id != self._sold_out.get(coupon_name) or read.remaining != 0:
            self._sold_out.pop(coupon_name, None)
            return [None] * len(users)
        return [
            ClaimOutcome.ALREADY_CLAIMED if holds else ClaimOutcome.SOLD_OUT for holds in read.holds
        ]

    async def close(self) -> None:
        await self._claim_lane.close()
        await self._sold_out_lane.close()
