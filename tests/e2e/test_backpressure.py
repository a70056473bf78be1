"""A coupon whose queue is full answers 503 with Retry-After, not a pile-up."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg

from tests.support.invariants import assert_invariants
from tests.support.load import claim_all, create_coupon
from tests.support.locks import locked
from tests.support.servers import served


async def test_claims_past_the_queue_cap_get_503_with_retry_after(
    database: str, db: asyncpg.Connection[Any], tmp_path: Path
) -> None:
    env = {"CLAIM_QUEUE_MAX": "10"}
    with served(database, tmp_path / "server.log", workers=1, env=env) as server:
        await create_coupon(server.base_url, "QUEUED", 1000)
        async with locked(db, "SELECT 1 FROM coupons WHERE name = 'QUEUED' FOR UPDATE"):
            claims = asyncio.create_task(
                claim_all([server.base_url], "QUEUED", [f"u{i}" for i in range(100)])
            )
            await asyncio.sleep(1)
        replies = await claims
    refused = [r for r in replies if r.status == 503]
    granted = [r for r in replies if r.status == 200]
    assert refused
    assert granted
    assert len(refused) + len(granted) == 100
    assert all(r.body["error"] == "service_unavailable" for r in refused)
    assert all(int(r.headers["Retry-After"]) >= 1 for r in refused)
    assert await db.fetchval("SELECT count(*) FROM claims") == len(granted)
    await assert_invariants(db)
