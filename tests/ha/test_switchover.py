"""A planned switchover under load, the service reaching the leader through
HAProxy and Patroni's /primary check (the second documented way): nothing
acknowledged is lost, and the time without claims is measured."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg

from tests.support.failover import claims_rush, longest_gap, timeline
from tests.support.patroni import Cluster
from tests.support.set_check import check_set
from tests.support.traffic import PROMPT


async def test_a_planned_switchover_through_haproxy_loses_nothing(
    ha_cluster: Cluster, ha_database: str, tmp_path: Path
) -> None:
    await _wait_for_haproxy(ha_cluster.haproxy_url)
    rush = claims_rush(ha_cluster.haproxy_url, tmp_path, "SWITCH", clients=32, tag="s")
    async with rush as traffic:
        await asyncio.sleep(2)
        old, new = ha_cluster.leader(), ha_cluster.sync_standby()
        assert old is not None
        assert new is not None
        started = time.monotonic()
        await asyncio.to_thread(
            ha_cluster.patronictl,
            "switchover",
            "--leader",
            old.name,
            "--candidate",
            new.name,
            "--force",
        )
        await asyncio.to_thread(ha_cluster.wait_healthy, 60)
        await asyncio.sleep(3)
    assert ha_cluster.leader() is new
    result = await check_set(new.url(), "SWITCH", traffic)
    gap = longest_gap(traffic, started)
    print(
        f"\nswitchover via HAProxy: {result.summary()}; longest time without a 200: "
        f"{gap:.2f} s; {traffic.outcomes()}\n{timeline(traffic, started)}"
    )
    assert result.ok, result
    slowest = max(s.latency for s in traffic.sent if s.status != 200)
    assert slowest < PROMPT, f"a 503 took {slowest:.2f} s"


async def _wait_for_haproxy(url: str, limit: float = 15) -> None:
    """HAProxy sends every new connection to the leader: it counts servers up
    until their first checks fail, so a few connections in a row must all
    land on a primary."""
    deadline = time.monotonic() + limit
    on_primary = 0
    while on_primary < 3:
        try:
            connection = await asyncpg.connect(url.replace("/coupondb", "/postgres"), timeout=2)
            try:
                in_recovery = await connection.fetchval("SELECT pg_is_in_recovery()")
            finally:
                await connection.close()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            in_recovery = True
        on_primary = 0 if in_recovery else on_primary + 1
        if on_primary < 3:
            assert time.monotonic() < deadline, "HAProxy never settled on the leader"
            await asyncio.sleep(0.2)
