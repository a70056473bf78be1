"""Rows of coupon_state and live_claims (schema.sql) as the service's
values, and a coupon's page of rows as its paged queries give it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import asyncpg

from flashsale.service.ports import ClaimView, CouponState

T = TypeVar("T")


def coupon_state(row: asyncpg.Record) -> CouponState:
    return CouponState(
        row["name"],
        row["amount"],
        row["remaining_amount"],
        row["status"],
        row["starts_at"],
        row["ends_at"],
        row["hold_seconds"],
        row["redeemed"],
    )


def claim_view(row: asyncpg.Record) -> ClaimView:
    return ClaimView(
        row["id"],
        row["user_id"],
        row["coupon_name"],
        row["status"],
        row["claimed_at"],
        row["expires_at"],
        row["redeemed_at"],
    )


def coupon_page(rows: list[asyncpg.Record], make: Callable[[asyncpg.Record], T]) -> list[T] | None:
    """A page from a query that joins a coupon to its rows (claims_page,
    coupon_events_page): no row at all, no such coupon (None); a single row
    with a NULL id, the coupon exists and the page is empty."""
    if not rows:
        return None
    return [make(row) for row in rows if row["id"] is not None]
