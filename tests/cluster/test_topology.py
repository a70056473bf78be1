"""Through HAProxy -> three instances -> PgBouncer (transaction mode) ->
PostgreSQL: the original's contract, exact under concurrency, and every read."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import asyncpg
import httpx

from flashsale.storage.queries import query
from tests.support.cluster import INSTANCES, Cluster
from tests.support.invariants import assert_a_greedy_user_wins_once, assert_invariants
from tests.support.load import claim_all, create_coupon, outcomes


def sessions_per_instance(cluster: Cluster) -> dict[str, int]:
    assert cluster.haproxy is not None
    return cluster.haproxy.server_sessions()


async def test_the_original_walk_through(cluster: Cluster, db: asyncpg.Connection[Any]) -> None:
    async with httpx.AsyncClient(base_url=cluster.base_url) as http:
        created = await http.post("/api/coupons", json={"name": "PROMO_SUPER", "amount": 100})
        assert created.status_code == 201
        claimed = await http.post(
            "/api/coupons/claim", json={"user_id": "user_12345", "coupon_name": "PROMO_SUPER"}
        )
        assert claimed.status_code == 200
        again = await http.post(
            "/api/coupons/claim", json={"user_id": "user_12345", "coupon_name": "PROMO_SUPER"}
        )
        assert (again.status_code, again.json()["error"]) == (409, "already_claimed")
        details = (await http.get("/api/coupons/PROMO_SUPER")).json()
        # The original's fields, first and unchanged; the sale's life follows them.
        assert dict(list(details.items())[:4]) == {
            "name": "PROMO_SUPER",
            "amount": 100,
            "remaining_amount": 99,
            "claimed_by": ["user_12345"],
        }
        missing = await http.post(
            "/api/coupons/claim", json={"user_id": "u1", "coupon_name": "NOPE"}
        )
        assert (missing.status_code, missing.json()["error"]) == (404, "coupon_not_found")
    await assert_invariants(db)


async def test_a_flash_sale_over_three_instances_sells_exactly_100_of_1000(
    cluster: Cluster, db: asyncpg.Connection[Any]
) -> None:
    await create_coupon(cluster.base_url, "FLASH", 100)
    before = sessions_per_instance(cluster)
    users = [f"user-{i}" for i in range(1000)]
    replies = await claim_all([cluster.base_url], "FLASH", users)
    assert outcomes(replies) == {"ok": 100, "409 sold_out": 900}
    winners = {user for user, reply in zip(users, replies, strict=True) if reply.status == 200}
    rows = await db.fetch("SELECT user_id FROM claims WHERE coupon_name = 'FLASH'")
    assert {row["user_id"] for row in rows} == winners
    assert await db.fetchval("SELECT remaining_amount FROM coupons WHERE name = 'FLASH'") == 0
    await assert_invariants(db)
    # The claims really were spread: every instance answered a share of them.
    after = sessions_per_instance(cluster)
    assert len(after) == INSTANCES
    assert all(after[name] - before.get(name, 0) >= 100 for name in after), (before, after)


async def test_one_user_claiming_100_times_at_once_across_instances_wins_once(
    cluster: Cluster, db: asyncpg.Connection[Any]
) -> None:
    await assert_a_greedy_user_wins_once(cluster.base_url, db)


async def test_streamed_read_paging_dashboard_and_health_work_through_pgbouncer(
    cluster: Cluster,
) -> None:
    await create_coupon(cluster.base_url, "READ", 5000)
    users = [f"reader-{i:05d}" for i in range(3000)]
    assert outcomes(await claim_all([cluster.base_url], "READ", users)) == {"ok": 3000}
    async with httpx.AsyncClient(base_url=cluster.base_url, timeout=30) as http:
        for _ in range(INSTANCES):  # each instance streams it from its own snapshot
            streamed = await http.get("/api/coupons/READ")
            assert streamed.status_code == 200
            assert sorted(streamed.json()["claimed_by"]) == users
        assert await _all_claims_by_pages(http) == users
        coupons = await http.get("/api/coupons", params={"limit": 1})
        assert coupons.status_code == 200
        assert [c["name"] for c in coupons.json()["coupons"]] == ["READ"]
        for _ in range(INSTANCES):
            health = await http.get("/health")
            assert (health.status_code, health.json()["database"]) == (200, "ok")
    snapshot = await _first_dashboard_event(cluster.base_url)
    assert "READ" in snapshot


async def _all_claims_by_pages(http: httpx.AsyncClient) -> list[str]:
    claimed: list[str] = []
    after: str | None = None
    while True:  # pages of 1,000 from whichever instance HAProxy picks
        params = {"limit": "1000", **({"after": after} if after else {})}
        page = (await http.get("/api/coupons/READ/claims", params=params)).json()
        claimed += [claim["user_id"] for claim in page["claims"]]
        after = page["next"]
        if after is None:
            return sorted(claimed)


async def _first_dashboard_event(base_url: str) -> str:
    """The first snapshot event of the live dashboard's stream."""
    timeout = aiohttp.ClientTimeout(total=10)
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        http.get(f"{base_url}/dashboard/events") as response,
    ):
        assert response.status == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.content:
            text = line.decode()
            if text.startswith("data:"):
                return text
    raise AssertionError("the stream ended without an event")


async def test_pooled_sessions_carry_the_service_timeouts(cluster: Cluster) -> None:
    """Any server connection PgBouncer hands out has them: they are the role's
    defaults in the database (0005), not startup parameters PgBouncer refuses."""
    connections = [
        await asyncpg.connect(cluster.pooled_url, statement_cache_size=0) for _ in range(5)
    ]
    try:
        rows = await asyncio.gather(*(c.fetchrow(query("session_timeouts")) for c in connections))
    finally:
        for connection in connections:
            await connection.close()
    assert {tuple(row.values()) for row in rows if row is not None} == {("5s", "5s", "10s")}
