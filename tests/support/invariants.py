"""The database's own verdict after a test: no coupon oversold, none whose
stock disagrees with its claims, no user holding a coupon twice."""

from __future__ import annotations

from typing import Any

import asyncpg

from flashsale.storage.verify import find_violations
from tests.support.load import claim_requests, create_coupon, outcomes, post_all_answered


async def assert_invariants(connection: asyncpg.Connection[Any]) -> None:
    violations = await find_violations(connection)
    assert violations == [], [v.describe() for v in violations]


async def assert_a_greedy_user_wins_once(base_url: str, db: asyncpg.Connection[Any]) -> None:
    """One user claiming coupon DIP (stock 50) 100 times at once gets exactly one."""
    await create_coupon(base_url, "DIP", 50)
    answered = await post_all_answered(claim_requests([base_url], "DIP", ["greedy"] * 100))
    # One 200 (none if its attempt answered 503 after committing: a loaded
    # machine), the rest already_claimed; the database says who holds it.
    counted = outcomes(answered.replies)
    assert set(counted) <= {"ok", "409 already_claimed"}
    assert counted["ok"] <= 1
    rows = await db.fetch("SELECT user_id FROM claims WHERE coupon_name = 'DIP'")
    assert [row["user_id"] for row in rows] == ["greedy"]
    assert await db.fetchval("SELECT remaining_amount FROM coupons WHERE name = 'DIP'") == 49
    await assert_invariants(db)
