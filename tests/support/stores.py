"""Types of the integration level's fixtures."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from flashsale.claims.ports import ClaimStrategy
from flashsale.domain import ClaimOutcome, raise_for_release
from flashsale.storage.store import CouponStore

# make_store(**environment): a store on a pool of its own, as a separate
# server process would have.
StoreFactory = Callable[..., Awaitable[CouponStore]]


async def outcome_of(engine: ClaimStrategy, *, coupon_name: str, user_id: str) -> ClaimOutcome:
    """A claim's outcome alone (the engine's decision also carries its times)."""
    decision = await engine.claim(coupon_name=coupon_name, user_id=user_id)
    return decision.outcome


async def release_through(engine: ClaimStrategy, *, coupon_name: str, user_id: str) -> None:
    """A release as the service makes it: through the claim engine, in the
    coupon's next claim batch; raises the domain error of a refusal."""
    decision = await engine.release(coupon_name=coupon_name, user_id=user_id)
    raise_for_release(decision.outcome, coupon_name=coupon_name, user_id=user_id)
