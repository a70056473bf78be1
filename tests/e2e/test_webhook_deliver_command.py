"""``flashsale deliver``: with WEBHOOK_DELIVERY=separate the serve workers
deliver nothing, and two delivery processes of their own share the work:
every event once, in seq order per coupon, each verified; both stop
cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg

from tests.support.load import claim_all, create_coupon, post_all
from tests.support.receiver import TEST_SECRET, Receiver
from tests.support.servers import SMALL_POOLS, serve
from tests.support.webhooks import wait_until

FAST = {
    "WEBHOOK_TIMEOUT": "1",
    "WEBHOOK_BACKOFF_BASE": "0.1",
    "WEBHOOK_BACKOFF_MAX": "0.5",
    "WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8",
}


def nice(pid: int) -> int | None:
    """A process's nice value (proc(5): the 19th field of /proc/PID/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[16])


def start_deliverer(database: str, log: Path) -> subprocess.Popen[bytes]:
    environment = {**os.environ, **SMALL_POOLS, **FAST, "DATABASE_URL": database}
    with log.open("wb") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "flashsale", "deliver"],
            env=environment, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip


async def test_delivery_processes_of_their_own_deliver_every_event_once_in_order(
    database: str, tmp_path: Path, receiver: Receiver, db: asyncpg.Connection[Any]
) -> None:
    env = {**FAST, "WEBHOOK_DELIVERY": "separate"}
    server = await asyncio.to_thread(serve, database, tmp_path / "serve.log", workers=2, env=env)
    deliverers: list[subprocess.Popen[bytes]] = []
    try:
        [reply] = await post_all(
            [(f"{server.base_url}/api/webhooks", {"url": receiver.url, "secret": TEST_SECRET})]
        )
        assert reply.status == 201, reply
        coupons = [f"APART_{i}" for i in range(3)]
        for coupon in coupons:
            await create_coupon(server.base_url, coupon, 40)
        await asyncio.gather(
            *(claim_all([server.base_url], c, [f"u{i}" for i in range(30)]) for c in coupons)
        )
        await asyncio.sleep(1.5)
        assert receiver.arrivals == []  # the serve workers deliver nothing
        deliverers = [start_deliverer(database, tmp_path / f"deliver{i}.log") for i in range(2)]
        # WEBHOOK_DELIVER_NICE (10): below the serve workers' CPU priority.
        await wait_until(lambda: all(nice(process.pid) == 10 for process in deliverers))
        rows = await db.fetch("SELECT coupon_name, array_agg(seq ORDER BY seq) AS seqs "
                              "FROM events GROUP BY coupon_name")  # fmt: skip
        expected = {row["coupon_name"]: list(row["seqs"]) for row in rows}
        await receiver.wait_for(sum(len(seqs) for seqs in expected.values()))
    finally:
        for process in deliverers:
            process.terminate()
        codes = [await asyncio.to_thread(process.wait, 20) for process in deliverers]
        await asyncio.to_thread(server.stop)
    assert codes == [0, 0], [(tmp_path / f"deliver{i}.log").read_text()[-2000:] for i in (0, 1)]
    ids = receiver.delivered_ids()
    assert len(ids) == len(set(ids))
    assert receiver.seqs_by_coupon() == expected
    assert all(arrival.verified for arrival in receiver.arrivals)


async def test_a_deliverer_stopped_while_it_starts_leaves_cleanly(
    database: str, tmp_path: Path
) -> None:
    """SIGTERM as soon as its priority is lowered (the database prepared, the
    event loop maybe not listening yet): exit code 0, never killed by it."""
    process = start_deliverer(database, tmp_path / "deliver.log")
    try:
        await wait_until(lambda: nice(process.pid) == 10)
    finally:
        process.terminate()
    assert await asyncio.to_thread(process.wait, 20) == 0
