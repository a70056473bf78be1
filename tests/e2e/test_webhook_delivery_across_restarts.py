"""Webhooks from ``flashsale serve``: a restart in the middle of retries
loses no event, and two instances (two workers each) delivering to one
loopback receiver never deliver one event twice; a delivery cut short by
kill -9 is sent again once its lease runs out. The receiver runs in the
test's event loop, so servers start and stop in a thread meanwhile."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import asyncpg

from flashsale.bench.server import RunningServer
from tests.support.load import claim_all, create_coupon, post_all
from tests.support.receiver import TEST_SECRET as SECRET
from tests.support.receiver import Receiver
from tests.support.servers import serve

FAST_RETRIES = {
    "WEBHOOK_TIMEOUT": "1",
    "WEBHOOK_BACKOFF_BASE": "0.1",
    "WEBHOOK_BACKOFF_MAX": "0.5",
    "WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8",  # the loopback receiver
}


async def start(database: str, log: Path, workers: int = 2) -> RunningServer:
    return await asyncio.to_thread(serve, database, log, workers=workers, env=FAST_RETRIES)


async def stop(server: RunningServer) -> None:
    assert await asyncio.to_thread(server.stop) == 0, server.log_tail()


async def register(base_url: str, url: str) -> None:
    [reply] = await post_all([(f"{base_url}/api/webhooks", {"url": url, "secret": SECRET})])
    assert reply.status == 201, reply


async def seqs_in_database(db: asyncpg.Connection[Any]) -> dict[str, list[int]]:
    rows = await db.fetch("SELECT coupon_name, array_agg(seq ORDER BY seq) AS seqs "
                          "FROM events GROUP BY coupon_name")  # fmt: skip
    return {row["coupon_name"]: list(row["seqs"]) for row in rows}


async def test_a_restart_in_the_middle_of_retries_loses_no_event(
    database: str, tmp_path: Path, receiver: Receiver, db: asyncpg.Connection[Any]
) -> None:
    receiver.down = True
    server = await start(database, tmp_path / "first.log")
    await register(server.base_url, receiver.url)
    for coupon in ("RESTART_A", "RESTART_B"):
        await create_coupon(server.base_url, coupon, 30)
        await claim_all([server.base_url], coupon, [f"u{i}" for i in range(20)])
    await receiver.wait_for_requests(6)  # retrying, nothing delivered
    await stop(server)
    receiver.down = False
    server = await start(database, tmp_path / "second.log")
    try:
        expected = await seqs_in_database(db)
        await receiver.wait_for(sum(len(seqs) for seqs in expected.values()))
    finally:
        await stop(server)
    assert receiver.seqs_by_coupon() == expected  # each once, in order per coupon
    assert all(arrival.verified for arrival in receiver.arrivals)
    assert await db.fetchval("SELECT count(*) FROM webhook_streams "
                             "WHERE delivered_seq < queued_seq") == 0  # fmt: skip


async def test_two_instances_deliver_every_event_once_in_order(
    database: str, tmp_path: Path, receiver: Receiver, db: asyncpg.Connection[Any]
) -> None:
    servers = await asyncio.gather(
        *(start(database, tmp_path / f"server{i}.log") for i in range(2))
    )
    try:
        bases = [server.base_url for server in servers]
        await register(bases[0], receiver.url)
        coupons = [f"TWO_{i}" for i in range(4)]
        for coupon in coupons:
            await create_coupon(bases[0], coupon, 60)
        await asyncio.gather(
            *(claim_all(bases, coupon, [f"u{i}" for i in range(50)]) for coupon in coupons)
        )
        expected = await seqs_in_database(db)
        await receiver.wait_for(sum(len(seqs) for seqs in expected.values()))
        await asyncio.sleep(1)  # a duplicate would come now
    finally:
        await asyncio.gather(*(stop(server) for server in servers))
    ids = receiver.delivered_ids()
    assert len(ids) == len(set(ids))
    assert receiver.seqs_by_coupon() == expected
    assert all(arrival.verified for arrival in receiver.arrivals)


async def test_a_delivery_cut_by_a_crash_is_sent_again_once_its_lease_runs_out(
    database: str, tmp_path: Path, receiver: Receiver, db: asyncpg.Connection[Any]
) -> None:
    receiver.stall_once = 3.0  # the first POST hangs: the crash comes meanwhile
    server = await asyncio.to_thread(
        serve, database, tmp_path / "crashed.log", workers=1, env=FAST_RETRIES, new_session=True
    )
    await register(server.base_url, receiver.url)
    await create_coupon(server.base_url, "CRASH_HOOK", 10)
    await claim_all([server.base_url], "CRASH_HOOK", ["ann", "bob", "cy"])
    await receiver.wait_for_requests(1)
    os.killpg(server.process.pid, signal.SIGKILL)  # Granian's main process and its worker
    await asyncio.to_thread(server.process.wait, 10)
    cut = receiver.arrivals[0]
    server = await start(database, tmp_path / "restarted.log", workers=1)
    try:
        expected = await seqs_in_database(db)
        await receiver.wait_for(len(expected["CRASH_HOOK"]))
    finally:
        await stop(server)
    assert receiver.seqs_by_coupon() == expected
    again = next(a for a in receiver.delivered() if a.event_id == cut.event_id)
    lease = 2 * float(FAST_RETRIES["WEBHOOK_TIMEOUT"]) + 5
    assert again.at - cut.at >= lease - 1  # the dead deliverer's lease held it until then
