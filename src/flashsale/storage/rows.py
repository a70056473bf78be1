"""Rows of coupon_state and live_claims (schema.sql) as the service's values."""

from __future__ import annotations

import asyncpg

from flashsale.service.ports import ClaimView, CouponState


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
