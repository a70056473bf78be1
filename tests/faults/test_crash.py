"""kill -9 of every server process with hundreds of claims in flight: every
200 already sent stands in the database, and stock still matches claims."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import asyncpg

from tests.support.invariants import assert_invariants
from tests.support.load import create_coupon
from tests.support.own_postgres import OwnPostgres
from tests.support.servers import serve
from tests.support.traffic import Traffic, claim_once, session, wait_until

CLAIMS = 3000
IN_FLIGHT = 400


async def claim_until_killed(base_url: str, coupon: str, traffic: Traffic) -> None:
    """CLAIMS users, IN_FLIGHT at a time; errors after the kill are recorded."""
    async with session(IN_FLIGHT, timeout=20) as http:
        await asyncio.gather(
            *(claim_once(http, base_url, coupon, f"{coupon}-{n}", traffic) for n in range(CLAIMS))
        )


def group_alive(group: int) -> bool:
    """Whether a process of the group still runs (zombies, dead but not yet
    reaped by an init that may never reap them, do not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited while we looked
        state, pgrp = fields[0], int(fields[2])
        if pgrp == group and state != "Z":
            return True
    return False


async def test_killing_every_server_process_mid_sale_loses_no_acknowledged_claim(
    own_postgres: OwnPostgres, own_database: str, tmp_path: Path
) -> None:
    server = serve(own_database, tmp_path / "server.log", workers=2, new_session=True)
    await create_coupon(server.base_url, "CRASH", CLAIMS)
    await create_coupon(server.base_url, "SCARCE", 50)
    traffic = Traffic()
    load = asyncio.gather(
        claim_until_killed(server.base_url, "CRASH", traffic),
        claim_until_killed(server.base_url, "SCARCE", traffic),
    )
    assert await wait_until(lambda: len(traffic.winners) >= 200, limit=30)
    os.killpg(server.process.pid, signal.SIGKILL)  # Granian's main process and workers
    server.process.wait(timeout=10)
    await load
    assert not group_alive(server.process.pid), "a worker survived kill -9"

    cut_off = sum(1 for s in traffic.sent if s.status is None)
    assert cut_off > 0, "the kill came after every claim was answered"
    print(f"crash: {len(traffic.winners)} claims acknowledged, {cut_off} cut off by the kill")
    # The database crashes too: only what reached the disk before COMMIT returned survives.
    own_postgres.stop("immediate")
    own_postgres.start()
    connection = await asyncpg.connect(own_database)
    try:
        stored = {row["user_id"] for row in await connection.fetch("SELECT user_id FROM claims")}
        assert traffic.winners <= stored
        await assert_invariants(connection)
    finally:
        await connection.close()
