"""Chooses the claim strategy named by CLAIM_STRATEGY."""

from __future__ import annotations

from flashsale.claims.batched import BatchedClaims
from flashsale.claims.ports import ClaimStore, ClaimStrategy
from flashsale.claims.transaction import TransactionPerClaim
from flashsale.config import ClaimStrategyName, Settings


def create_claim_engine(settings: Settings, store: ClaimStore) -> ClaimStrategy:
    if settings.claim_strategy is ClaimStrategyName.TRANSACTION:
        return TransactionPerClaim(store)
    return BatchedClaims(
        store, max_batch=settings.claim_batch_max, max_queue=settings.claim_queue_max
    )
