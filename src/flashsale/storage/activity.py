"""What the live dashboard polls: the most recently claimed coupons with
their stock and latest claimers, in one cheap query."""

from __future__ import annotations

from dataclasses import dataclass

from flashsale.storage.errors import database_unavailable_as_503
from flashsale.storage.pool import Pool
from flashsale.storage.queries import query


@dataclass(frozen=True, slots=True)
class CouponActivity:
    name: str
    amount: int
    remaining_amount: int
    recent_claimers: list[str]  # newest first


class ActivityReader:
    def __init__(self, pool: Pool, acquire_timeout: float) -> None:
        self.pool = pool
        self.acquire_timeout = acquire_timeout

    async def recent_activity(self, coupons: int, claimers: int) -> list[CouponActivity]:
        """Up to ``coupons`` coupons, most recently claimed first, each with
        its last ``claimers`` claimers."""
        with database_unavailable_as_503():
            async with self.pool.acquire(timeout=self.acquire_timeout) as connection:
                rows = await connection.fetch(query("dashboard_coupons"), coupons, claimers)
        return [
            CouponActivity(row["name"], row["amount"], row["remaining_amount"], row["recent"])
            for row in rows
        ]
