"""The old leader comes back after a kill -9: Patroni rewinds it (pg_rewind)
and it rejoins as a replica of the new leader; the service never writes to it,
so once it has replayed it holds exactly what the new leader holds."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg

from tests.support.failover import claims_rush, promoted_at
from tests.support.patroni import Cluster, Node
from tests.support.set_check import check_set
from tests.support.traffic import first_success_after

CLAIMS_OF = "SELECT user_id FROM claims"


async def test_the_old_leader_rejoins_as_a_replica_and_is_never_written(
    ha_cluster: Cluster, ha_database: str, tmp_path: Path
) -> None:
    async with claims_rush(ha_database, tmp_path, "BACK", clients=32, tag="r") as traffic:
        await asyncio.sleep(2)
        old = ha_cluster.leader()
        assert old is not None
        await asyncio.to_thread(ha_cluster.kill_node, old)
        survivors = [node for node in ha_cluster.nodes if node is not old]
        promoted = await promoted_at(survivors)
        assert promoted is not None
        assert await first_success_after(traffic, promoted, limit=60) is not None
        back_at = time.monotonic()
        await asyncio.to_thread(ha_cluster.start_node, old)
        await asyncio.to_thread(ha_cluster.wait_healthy, 60)
        rejoined = time.monotonic() - back_at
        await asyncio.sleep(2)  # claims go on with the old leader back as a replica
    leader = ha_cluster.leader()
    assert leader is not None
    assert leader is not old
    role = {m["name"]: m["role"] for m in ha_cluster.members()}[old.name]
    assert role in ("replica", "sync_standby")
    assert await _in_recovery(old)
    result = await check_set(leader.url(), "BACK", traffic)
    on_old = await _claims_once_replayed(old, leader)
    rewound = "pg_rewind exit code=0" in old.log_path.read_text(errors="replace")
    print(
        f"\nold leader back: rejoined as {role} in {rejoined:.1f} s "
        f"({'rewound with pg_rewind' if rewound else 'no rewind needed'}); {result.summary()}"
    )
    assert result.ok, result
    assert on_old == {s.user for s in traffic.sent} & on_old  # nothing it alone holds


async def _in_recovery(node: Node) -> bool:
    connection = await asyncpg.connect(node.url())
    try:
        return bool(await connection.fetchval("SELECT pg_is_in_recovery()"))
    finally:
        await connection.close()


async def _claims_once_replayed(replica: Node, leader: Node, limit: float = 20) -> set[str]:
    """The replica's claims, once they equal the leader's (it has replayed);
    a write that went to the replica alone would keep them apart forever."""
    deadline = time.monotonic() + limit
    while True:
        on_leader = await _claims(leader)
        on_replica = await _claims(replica)
        if on_replica == on_leader or time.monotonic() > deadline:
            assert on_replica == on_leader, on_replica ^ on_leader
            return on_replica
        await asyncio.sleep(0.5)


async def _claims(node: Node) -> set[str]:
    connection = await asyncpg.connect(node.url())
    try:
        return {row["user_id"] for row in await connection.fetch(CLAIMS_OF)}
    finally:
        await connection.close()
