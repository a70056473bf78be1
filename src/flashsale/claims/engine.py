"""Chooses the claim strategy named by CLAIM_STRATEGY."""

from __future__ import annotations

from collections.abc import Callable

from flashsale.claims.batched import BatchedClaims
from flashsale.claims.lanes import OnLaneBatch
from flashsale.claims.ports import ClaimStore, ClaimStrategy
from flashsale.claims.transaction import TransactionPerClaim
from flashsale.config import ClaimStrategyName, Settings

# A coupon's releases gather this long (or until this many wait) before
# their claim batch (claims/gate.py): a release answers up to 20 ms later,
# and a batch pays the releases' fixed database cost for several at once.
RELEASE_GATHER = (0.02, 64)


def create_claim_engine(
    settings: Settings,
    store: ClaimStore,
    on_batch: Callable[[str, int], None] | None = None,  # (lane, size) of each batch
    on_lane_batch: OnLaneBatch | None = None,  # (lane, size, coupons, wait) of each claim batch
) -> ClaimStrategy:
    if settings.claim_strategy is ClaimStrategyName.TRANSACTION:
        return TransactionPerClaim(store)
    return BatchedClaims(
        store,
        max_batch=settings.claim_batch_max,
        max_queue=settings.claim_queue_max,
        on_batch=on_batch,
        release_gather=RELEASE_GATHER,
        lanes=settings.claim_lanes,
        coupon_share=settings.claim_coupon_share,
        on_lane_batch=on_lane_batch,
    )
