"""SIGTERM under load: claims already accepted commit and are answered, new
connections are turned away, and the server exits 0 with no worker killed."""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from flashsale.bench.server import RunningServer
from tests.support.invariants import assert_invariants
from tests.support.load import create_coupon
from tests.support.servers import serve, workers_killed_late
from tests.support.traffic import Traffic, claim_once, session, wait_until

CLAIMS = 2000
IN_FLIGHT = 300
# Connection-level failures: the claim was never accepted, so never answered.
NOT_ACCEPTED = {"ClientConnectorError", "ServerDisconnectedError", "ClientOSError"}


async def claim_all(base_url: str, coupon: str, traffic: Traffic) -> None:
    async with session(IN_FLIGHT, timeout=20) as http:
        await asyncio.gather(
            *(claim_once(http, base_url, coupon, f"user-{n}", traffic) for n in range(CLAIMS))
        )


def connection_refused(base_url: str) -> bool:
    address = urlsplit(base_url)
    try:
        with socket.create_connection((address.hostname, address.port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


async def wait_for_exit(server: RunningServer, limit: float) -> tuple[int | None, float]:
    started = time.monotonic()
    await wait_until(lambda: server.process.poll() is not None, limit)
    return server.process.poll(), time.monotonic() - started


@pytest.mark.parametrize("strategy", ["batched", "transaction"])
async def test_sigterm_under_load_answers_accepted_claims_and_exits_cleanly(
    database: str, db: asyncpg.Connection[asyncpg.Record], tmp_path: Path, strategy: str
) -> None:
    # SHUTDOWN_TIMEOUT is generous: a loaded machine may take longer than the
    # default 8 s to finish 300 claims in flight; what this test holds is that
    # they are finished and answered, not how fast.
    env = {"CLAIM_STRATEGY": strategy, "SHUTDOWN_TIMEOUT": "60"}
    server = serve(database, tmp_path / "server.log", workers=2, env=env)
    await create_coupon(server.base_url, "BYE", CLAIMS)
    traffic = Traffic()
    load = asyncio.create_task(claim_all(server.base_url, "BYE", traffic))
    assert await wait_until(lambda: len(traffic.winners) >= 100, limit=30)
    server.process.send_signal(signal.SIGTERM)
    code, took = await wait_for_exit(server, limit=90)
    await load

    # A clean exit: every worker finished its work before Granian's kill
    # timeout (SHUTDOWN_TIMEOUT) would have killed it, which it says in the log.
    assert code == 0, f"exit {code} after {took:.1f} s\n{server.log()}"
    assert workers_killed_late(server.log(), kill_timeout_s=60) == []
    assert connection_refused(server.base_url)
    kinds = {s.outcome for s in traffic.sent}
    assert kinds <= {"ok", "503 service_unavailable"} | {f"None {k}" for k in NOT_ACCEPTED}, kinds
    stored = {row["user_id"] for row in await db.fetch("SELECT user_id FROM claims")}
    # Exactly the answered claims are stored: none lost, none committed unanswered.
    assert stored == traffic.winners
    await assert_invariants(db)
    print(f"shutdown ({strategy}): exit {code} in {took:.2f} s; {traffic.outcomes()}")
