"""The read use cases, for coupons of any size: one coupon streamed from a
snapshot, its claims page by page, and the coupons themselves page by page.
Each runs under the request deadline, as the writes do."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from flashsale.domain import ClaimNotFound, CouponNotFound, DomainError
from flashsale.service.deadline import deadline
from flashsale.service.ports import (
    ClaimRow,
    ClaimView,
    CouponReader,
    CouponSnapshot,
    CouponStock,
    EntryRow,
    EntryView,
)


@dataclass(frozen=True, slots=True)
class ClaimsPage:
    claims: list[ClaimRow]
    next_after: int | None  # claim id to continue after; None on the last page


@dataclass(frozen=True, slots=True)
class CouponsPage:
    coupons: list[CouponStock]
    next_after: str | None  # coupon name to continue after; None on the last page


@dataclass(frozen=True, slots=True)
class EntriesPage:
    entries: list[EntryRow]
    next_after: bytes | None  # entrant to continue after; None on the last page


@dataclass(frozen=True, slots=True)
class UserClaimsPage:
    claims: list[ClaimView]  # newest first
    next_before: int | None  # claim id to continue below; None on the last page


Row = TypeVar("Row")
Key = TypeVar("Key")
Found = TypeVar("Found")


def one_page(
    rows: list[Row], limit: int, key: Callable[[Row], Key]
) -> tuple[list[Row], Key | None]:
    """The first ``limit`` of ``limit + 1`` rows fetched, and the key to continue
    from: one row more than asked tells whether another page follows."""
    page = rows[:limit]
    return page, key(page[-1]) if len(rows) > limit else None


class CouponReads:
    def __init__(self, reader: CouponReader, *, request_timeout: float = 10.0) -> None:
        self._reader = reader
        self.request_timeout = request_timeout

    async def open_coupon(self, name: str) -> CouponSnapshot:
        """The coupon, with its claimers still to be read from the same
        snapshot; CouponNotFound (nothing held) when there is none. The
        deadline covers opening the snapshot: 404 and 503 are decided there."""
        return await self._found(lambda: self._reader.open_snapshot(name), _no_coupon(name))

    async def claims_page(self, name: str, *, after: int, limit: int) -> ClaimsPage:
        rows = await self._found(
            lambda: self._reader.claims_page(name, after=after, limit=limit + 1), _no_coupon(name)
        )
        return ClaimsPage(*one_page(rows, limit, lambda row: row.claim_id))

    async def coupons_page(self, *, after: str, limit: int) -> CouponsPage:
        async with deadline(self.request_timeout):
            rows = await self._reader.coupons_page(after=after, limit=limit + 1)
        return CouponsPage(*one_page(rows, limit, lambda row: row.name))

    async def entries_page(self, name: str, *, after: bytes | None, limit: int) -> EntriesPage:
        rows = await self._found(
            lambda: self._reader.entries_page(name, after=after, limit=limit + 1), _no_coupon(name)
        )
        return EntriesPage(*one_page(rows, limit, lambda row: row.entrant))

    async def claim(self, *, coupon_name: str, user_id: str) -> ClaimView | EntryView:
        """The user's live claim; ClaimNotFound (an expired or released hold
        is gone) or CouponNotFound otherwise."""
        return await self._found(
            lambda: self._reader.find_claim(coupon_name=coupon_name, user_id=user_id),
            ClaimNotFound(f"user {user_id!r} holds no live claim on coupon {coupon_name!r}"),
        )

    async def user_claims_page(self, user_id: str, *, before: int, limit: int) -> UserClaimsPage:
        async with deadline(self.request_timeout):
            rows = await self._reader.user_claims_page(user_id, before=before, limit=limit + 1)
        return UserClaimsPage(*one_page(rows, limit, lambda row: row.claim_id))

    async def _found(
        self, read: Callable[[], Awaitable[Found | None]], missing: DomainError
    ) -> Found:
        """What ``read`` finds under the request deadline, or ``missing`` raised."""
        async with deadline(self.request_timeout):
            found = await read()
        if found is None:
            raise missing
        return found


def _no_coupon(name: str) -> CouponNotFound:
    return CouponNotFound(f"coupon {name!r} does not exist")
