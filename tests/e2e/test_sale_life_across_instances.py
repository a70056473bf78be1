"""The sale's life against two ``flashsale serve`` instances (two workers
each) on one database: holds expire on time with no request, exactly once
across every sweeper; releases racing a rush of claims at sell-out over HTTP;
user ids with '/', '%', '?', '#' and non-ASCII through Granian's paths."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import asyncpg
import pytest
from yarl import URL

from flashsale.bench.server import RunningServer
from tests.support.invariants import assert_invariants
from tests.support.load import claim_all, outcomes, post_all
from tests.support.servers import two_instances


@pytest.fixture
def servers(database: str, tmp_path: Path) -> Iterator[list[RunningServer]]:
    with two_instances(database, tmp_path, workers=2) as live:
        yield live


async def request(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    """One request, its URL sent exactly as written (already percent-encoded)."""
    target = URL(url, encoded=True)
    async with aiohttp.ClientSession() as session, session.request(method, target, json=body) as r:
        text = await r.text()
        return r.status, (await r.json(content_type=None)) if text else None


async def test_holds_expire_on_time_exactly_once_with_no_request(
    servers: list[RunningServer], db: asyncpg.Connection[Any]
) -> None:
    base = servers[0].base_url
    status, _ = await request(
        "POST", f"{base}/api/coupons", {"name": "HOLD", "amount": 50, "hold_seconds": 10}
    )
    assert status == 201
    replies = await claim_all([s.base_url for s in servers], "HOLD", [f"u{i}" for i in range(80)])
    assert outcomes(replies) == {"ok": 50, "409 sold_out": 30}
    expires_at = max(await db.fetchval("SELECT array_agg(expires_at) FROM claims"))
    # Nobody reads or claims: the sweepers alone must return every unit.
    deadline = expires_at.timestamp() + 2.0
    while time.time() < deadline + 0.5:
        if await db.fetchval("SELECT count(*) FROM claims") == 0:
            break
        await asyncio.sleep(0.1)
    assert await db.fetchval("SELECT count(*) FROM claims") == 0
    gone_by = await db.fetchval("SELECT max(ended_at) FROM claim_history")
    assert gone_by.timestamp() <= deadline
    assert await db.fetchval("SELECT count(DISTINCT claim_id) FROM claim_history") == 50
    assert await db.fetchval("SELECT remaining_amount FROM coupons") == 50
    await assert_invariants(db)


async def test_releases_racing_a_rush_at_sell_out_over_http(
    servers: list[RunningServer], db: asyncpg.Connection[Any]
) -> None:
    urls = [s.base_url for s in servers]
    await request("POST", f"{urls[0]}/api/coupons", {"name": "RUSH", "amount": 100})
    first = await claim_all(urls, "RUSH", [f"h{i}" for i in range(100)])
    assert outcomes(first) == {"ok": 100}

    async def releases() -> list[int]:
        connector = aiohttp.TCPConnector(limit=50)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def one(i: int) -> int:
                url = f"{urls[i % 2]}/api/coupons/RUSH/claims/h{i}"
                async with session.delete(url) as response:
                    return response.status

            return list(await asyncio.gather(*(one(i) for i in range(40))))

    rush, released = await asyncio.gather(
        claim_all(urls, "RUSH", [f"n{i}" for i in range(600)]), releases()
    )
    assert released == [204] * 40
    granted = outcomes(rush)["ok"]
    assert granted <= 40
    assert set(outcomes(rush)) <= {"ok", "409 sold_out"}
    live = await db.fetchval("SELECT count(*) FROM claims")
    assert live == 100 - 40 + granted <= 100
    await assert_invariants(db)


ODD_USERS = ["with space", "a/b", "100%", "what?", "#hash", "ünïcødé 🎟", "a%2Fb"]


async def test_odd_user_ids_round_trip_through_the_server_paths(
    servers: list[RunningServer], db: asyncpg.Connection[Any]
) -> None:
    base = servers[0].base_url
    await request("POST", f"{base}/api/coupons", {"name": "ODD", "amount": 10})
    await post_all(
        [(f"{base}/api/coupons/claim", {"user_id": u, "coupon_name": "ODD"}) for u in ODD_USERS]
    )
    for user in ODD_USERS:
        encoded = quote(user, safe="")
        status, body = await request("GET", f"{base}/api/coupons/ODD/claims/{encoded}")
        assert (status, body["user_id"]) == (200, user)
        status, body = await request("GET", f"{base}/api/users/{encoded}/claims")
        assert [c["user_id"] for c in body["claims"]] == [user]
        status, body = await request("POST", f"{base}/api/coupons/ODD/claims/{encoded}/redeem")
        assert (status, body["status"]) == (200, "redeemed")
    await assert_invariants(db)
