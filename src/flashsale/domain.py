"""What the service knows about coupons and claims, free of HTTP and SQL."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ClaimOutcome(StrEnum):
    CLAIMED = "claimed"
    ALREADY_CLAIMED = "already_claimed"
    SOLD_OUT = "sold_out"
    NOT_FOUND = "not_found"


@dataclass(frozen=True, slots=True)
class Coupon:
    name: str
    amount: int
    remaining_amount: int
    claimed_by: list[str]


class DomainError(Exception):
    """A failure the client can act on; ``code`` is stable, ``message`` for people."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class CouponExists(DomainError):
    code = "coupon_exists"


class CouponNotFound(DomainError):
    code = "coupon_not_found"


class AlreadyClaimed(DomainError):
    code = "already_claimed"


class SoldOut(DomainError):
    code = "sold_out"


class ServiceUnavailable(DomainError):
    """The database is out of reach or the service is saturated: retry later."""

    code = "service_unavailable"

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def raise_for_outcome(outcome: ClaimOutcome, *, coupon_name: str, user_id: str) -> None:
    """Turn a claim's outcome into success (return) or the client's error."""
    if outcome is ClaimOutcome.CLAIMED:
        return
    if outcome is ClaimOutcome.ALREADY_CLAIMED:
        raise AlreadyClaimed(f"user {user_id!r} has already claimed coupon {coupon_name!r}")
    if outcome is ClaimOutcome.SOLD_OUT:
        raise SoldOut(f"coupon {coupon_name!r} is sold out")
    raise CouponNotFound(f"coupon {coupon_name!r} does not exist")
