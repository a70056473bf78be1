"""The database's own verdict after a test: no coupon oversold, none whose
stock disagrees with its claims, no user holding a coupon twice."""

from __future__ import annotations

from typing import Any

import asyncpg

from flashsale.storage.verify import find_violations
from tests.support.load import claim_all, create_coupon, outcomes


async def assert_invariants(connection: asyncpg.Connection[Any]) -> None:
    violations = await find_violations(connection)
    assert violations == [], [v.describe() for v in violations]


async def assert_a_greedy_user_wins_once(base_url: str, db: asyncpg.Connection[Any]) -> None:
    """One user claiming coupon DIP (stock 50) 100 times at once gets exactly one."""
    await create_coupon(base_url, "DIP", 50)
    replies = await claim_all([base_url], "DIP", ["greedy"] * 100)
    assert outcomes(replies) == {"ok": 1, "409 already_claimed": 99}
    rows = await db.fetch("SELECT user_id FROM claims WHERE coupon_name = 'DIP'")
    assert [row["user_id"] for row in rows] == ["greedy"]
    assert await db.fetchval("SELECT remaining_amount FROM coupons WHERE name = 'DIP'") == 49
    await assert_invariants(db)
