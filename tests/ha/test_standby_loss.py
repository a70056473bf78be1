"""Both standbys stop: in synchronous_mode_strict the leader blocks every
commit rather than run unreplicated. Claims answer 503 within REQUEST_TIMEOUT,
none becomes visible (GET, already_claimed) while blocked, and once a standby
is back the waiting commits complete and every invariant holds."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from tests.support.failover import SERVICE_ENV
from tests.support.load import create_coupon
from tests.support.patroni import Cluster
from tests.support.servers import serve
from tests.support.set_check import check_set
from tests.support.traffic import PROMPT, Traffic, claim_once, session

STOCK = 1000
BLOCKED = 40


async def get_json(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, object]]:
    async with http.get(url) as response:
        return response.status, await response.json(content_type=None)


async def claims(base_url: str, users: list[str], traffic: Traffic) -> None:
    async with session(len(users), timeout=30) as http:
        await asyncio.gather(*(claim_once(http, base_url, "HOLD", u, traffic) for u in users))


async def wait_for_health_reason(base_url: str, limit: float) -> tuple[int, dict[str, object]]:
    deadline = time.monotonic() + limit
    async with session(1) as http:
        while True:
            status, body = await get_json(http, f"{base_url}/health")
            if status == 503 or time.monotonic() > deadline:
                return status, body
            await asyncio.sleep(0.2)


@pytest.mark.parametrize("strategy", ["batched", "transaction"])
async def test_with_no_synchronous_standby_claims_wait_unseen_and_complete_when_it_returns(
    ha_cluster: Cluster, ha_database: str, tmp_path: Path, strategy: str
) -> None:
    env = {**SERVICE_ENV, "CLAIM_STRATEGY": strategy}
    server = serve(ha_database, tmp_path / "server.log", workers=2, env=env)
    traffic = Traffic()
    try:
        await create_coupon(server.base_url, "HOLD", STOCK)
        await claims(server.base_url, [f"before-{n}" for n in range(10)], traffic)
        leader, standbys = ha_cluster.leader(), ha_cluster.replicas()
        assert leader is not None
        for node in standbys:
            await asyncio.to_thread(ha_cluster.stop_node, node)
        blocked_users = [f"blocked-{n}" for n in range(BLOCKED)]
        blocked = Traffic()
        await claims(server.base_url, blocked_users, blocked)
        # While the commits wait: the same users again, and a read.
        again = Traffic()
        await claims(server.base_url, blocked_users, again)
        async with session(1) as http:
            status, coupon = await get_json(http, f"{server.base_url}/api/coupons/HOLD")
        health_status, health = await wait_for_health_reason(server.base_url, limit=60)
        for node in standbys:
            await asyncio.to_thread(ha_cluster.start_node, node)
        await asyncio.to_thread(ha_cluster.wait_healthy, 60)
        await _wait_for_waiting_commits(leader.url())
        after = Traffic()
        await claims(server.base_url, [f"after-{n}" for n in range(10)], after)
    finally:
        server.stop()
    print(
        f"\nno synchronous standby ({strategy}): blocked claims {blocked.outcomes()}, "
        f"slowest {max(s.latency for s in blocked.sent):.2f} s; the same users again "
        f"{again.outcomes()}; health {health_status} {health.get('message')}"
    )
    assert blocked.outcomes() == {"503 service_unavailable": BLOCKED}
    assert max(s.latency for s in blocked.sent) < PROMPT
    assert again.outcomes() == {"503 service_unavailable": BLOCKED}  # never already_claimed
    assert status == 200
    assert coupon["remaining_amount"] == STOCK - 10
    claimed_by = coupon["claimed_by"]
    assert isinstance(claimed_by, list)
    assert not set(blocked_users) & set(claimed_by)
    assert health_status == 503
    assert "synchronous standby" in str(health.get("message"))
    assert after.outcomes() == {"ok": 10}
    everything = Traffic(traffic.sent + blocked.sent + again.sent + after.sent)
    result = await check_set(leader.url(), "HOLD", everything)
    print(f"after the standbys returned: {result.summary()}")
    assert result.ok, result


async def _wait_for_waiting_commits(url: str, limit: float = 20) -> None:
    """Until no backend of the leader waits for synchronous replication."""
    connection = await asyncpg.connect(url)
    try:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            waiting = await connection.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'"
            )
            if waiting == 0:
                return
            await asyncio.sleep(0.2)
        raise AssertionError(f"{waiting} commits still wait for a standby")
    finally:
        await connection.close()
