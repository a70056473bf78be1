"""What the use cases need from storage, and the plain values they get back.
``flashsale.storage`` implements these Protocols; nothing here knows SQL.
(The claim engine's own port is ``flashsale.claims.ports.ClaimStore``.)"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class CouponHeader:
    name: str
    amount: int
    remaining_amount: int


@dataclass(frozen=True, slots=True)
class ClaimRow:
    claim_id: int
    user_id: str
    claimed_at: datetime


@dataclass(frozen=True, slots=True)
class CouponStock:
    name: str
    amount: int
    remaining_amount: int


@dataclass(frozen=True, slots=True)
class CouponActivity:
    name: str
    amount: int
    remaining_amount: int
    recent_claimers: list[str]  # newest first


class CouponSnapshot:
    """A coupon and its claimers as of one snapshot, read on one connection
    that is held until the claimers are read.

    The rows come from a generator already started inside its transaction: it
    releases the connection when it ends, fails or is closed, and the event
    loop closes it should its reader drop it unread."""

    def __init__(self, header: CouponHeader, batches: AsyncGenerator[list[str], None]) -> None:
        self.header = header
        self._batches = batches

    def user_id_batches(self) -> AsyncGenerator[list[str], None]:
        """The claimers' user ids in claim order, in batches; iterate once."""
        return self._batches

    async def close(self) -> None:
        await self._batches.aclose()


class CouponWriter(Protocol):
    """The writes that are not claims (those go through the claim engine)."""

    async def ping(self) -> None: ...

    async def create_coupon(self, *, name: str, amount: int) -> None:
        """CouponExists when the name is taken."""


class CouponReader(Protocol):
    async def open_snapshot(self, name: str) -> CouponSnapshot | None:
        """The coupon read in a fresh snapshot, claimers still to come; None
        (nothing held) when there is no such coupon."""

    async def claims_page(self, name: str, *, after: int, limit: int) -> list[ClaimRow] | None:
        """Up to ``limit`` claims after claim ``after``; None: no such coupon."""

    async def coupons_page(self, *, after: str, limit: int) -> list[CouponStock]:
        """Up to ``limit`` coupons named after ``after``, by name."""


class ActivityReader(Protocol):
    async def recent_activity(self, *, coupons: int, claimers: int) -> list[CouponActivity]:
        """Up to ``coupons`` coupons, most recently claimed first, each with
        its last ``claimers`` claimers."""
