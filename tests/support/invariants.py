"""The database's own verdict after a test: no coupon oversold, none whose
stock disagrees with its claims, no user holding a coupon twice."""

from __future__ import annotations

from typing import Any

import asyncpg

from flashsale.storage.verify import find_violations


async def assert_invariants(connection: asyncpg.Connection[Any]) -> None:
    violations = await find_violations(connection)
    assert violations == [], [v.describe() for v in violations]
