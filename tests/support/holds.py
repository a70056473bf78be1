"""Holds made due without waiting: a hold lasts at least 10 s, so tests move
its expiry into the past instead of sleeping."""

from __future__ import annotations

from typing import Any

import asyncpg


async def expire_holds(db: asyncpg.Connection[Any], coupon: str, users: list[str]) -> None:
    await db.execute(
        "UPDATE claims SET expires_at = now() - interval '1 millisecond' "
        "WHERE coupon_name = $1 AND user_id = ANY ($2)",
        coupon,
        users,
    )
