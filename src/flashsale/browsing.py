"""Use cases for reading coupons of any size: one coupon streamed from a
snapshot, its claims page by page, and the coupons themselves page by page."""

from __future__ import annotations

from dataclasses import dataclass

from flashsale.domain import CouponNotFound
from flashsale.storage.claimers import ClaimerReader, ClaimRow, CouponSnapshot, CouponStock
from flashsale.storage.pool import Pool


@dataclass(frozen=True, slots=True)
class ClaimsPage:
    claims: list[ClaimRow]
    next_after: int | None  # claim id to continue after; None on the last page


@dataclass(frozen=True, slots=True)
class CouponsPage:
    coupons: list[CouponStock]
    next_after: str | None  # coupon name to continue after; None on the last page


class CouponBrowser:
    def __init__(self, pool: Pool, acquire_timeout: float) -> None:
        self.reader = ClaimerReader(pool, acquire_timeout)

    async def open_coupon(self, name: str) -> CouponSnapshot:
        """The coupon, with its claimers still to be read from the same
        snapshot; CouponNotFound (nothing held) when there is none."""
        snapshot = await self.reader.open_snapshot(name)
        if snapshot is None:
            raise CouponNotFound(f"coupon {name!r} does not exist")
        return snapshot

    async def claims_page(self, name: str, after: int, limit: int) -> ClaimsPage:
        # One row more than asked tells whether another page follows.
        rows = await self.reader.claims_page(name, after, limit + 1)
        if rows is None:
            raise CouponNotFound(f"coupon {name!r} does not exist")
        page = rows[:limit]
        more = len(rows) > limit
        return ClaimsPage(page, page[-1].claim_id if more else None)

    async def coupons_page(self, after: str, limit: int) -> CouponsPage:
        rows = await self.reader.coupons_page(after, limit + 1)
        page = rows[:limit]
        more = len(rows) > limit
        return CouponsPage(page, page[-1].name if more else None)
