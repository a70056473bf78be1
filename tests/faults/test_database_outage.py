"""PostgreSQL stops under load and comes back: the service answers 503 fast
while it is gone, serves again within seconds of its return, loses nothing."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg

from flashsale.bench.server import RunningServer
from tests.support.databases import with_password
from tests.support.invariants import assert_invariants
from tests.support.load import create_coupon
from tests.support.own_postgres import OwnPostgres
from tests.support.servers import serve
from tests.support.traffic import PROMPT, Traffic, claim_loop, first_success_after, session

ACQUIRE_TIMEOUT = 1.0
STATEMENT_TIMEOUT = 2.0
OUTAGE_SECONDS = 3.0
# How long the service may take to come back: generous, since a loaded
# machine restarts PostgreSQL slowly; how fast it is, is the bench's business.
RECOVERY_LIMIT = 60.0


async def health(base_url: str) -> tuple[int, str, float]:
    started = time.monotonic()
    async with session(1) as http, http.get(f"{base_url}/health") as response:
        body = await response.json(content_type=None)
        return response.status, str(body.get("error", "")), time.monotonic() - started


async def test_a_database_outage_gives_fast_503s_and_claims_resume_when_it_returns(
    own_postgres: OwnPostgres, own_database: str, tmp_path: Path
) -> None:
    server = serve(
        own_database,
        tmp_path / "server.log",
        workers=2,
        env={
            "DB_ACQUIRE_TIMEOUT": str(ACQUIRE_TIMEOUT),
            "DB_STATEMENT_TIMEOUT": str(STATEMENT_TIMEOUT),
        },
    )
    try:
        await create_coupon(server.base_url, "OUTAGE", 1_000_000)
        traffic, stop = Traffic(), asyncio.Event()
        load = asyncio.create_task(
            claim_loop(server.base_url, "OUTAGE", traffic, stop, clients=32, tag="u")
        )
        await asyncio.sleep(1)
        down_at = time.monotonic()
        await asyncio.to_thread(own_postgres.stop, "fast")
        await asyncio.sleep(0.5)  # requests in flight at the stop have settled
        status, code, took = await health(server.base_url)
        assert (status, code) == (503, "service_unavailable")
        assert took < PROMPT
        await asyncio.sleep(OUTAGE_SECONDS)
        restart_at = time.monotonic()
        await asyncio.to_thread(own_postgres.start)
        resumed = await first_success_after(traffic, restart_at, limit=RECOVERY_LIMIT)
        recovered = None if resumed is None else resumed - restart_at
        stop.set()
        await load
    finally:
        server.stop()
    during = traffic.between(down_at + 0.5, restart_at)
    assert during, "no claim was answered while the database was down"
    assert {s.outcome for s in during} == {"503 service_unavailable"}
    assert max(s.latency for s in during) < PROMPT
    assert not [s for s in traffic.sent if s.status is None or s.status == 500], server.log()
    assert recovered is not None, f"claims did not resume within {RECOVERY_LIMIT:.0f} s"
    slowest = max(s.latency for s in during)
    print(
        f"outage: {len(during)} claims answered 503 while down (slowest {slowest:.2f} s); "
        f"claims resumed {recovered:.2f} s after the restart; {traffic.outcomes()}"
    )
    await assert_acknowledged_claims_are_stored(own_database, traffic)


async def assert_acknowledged_claims_are_stored(url: str, traffic: Traffic) -> None:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch("SELECT user_id FROM claims")
        assert traffic.winners <= {row["user_id"] for row in rows}
        await assert_invariants(connection)
    finally:
        await connection.close()


PASSWORD = "Pw-outage-0b9e-never-print-me"


async def test_health_and_claims_are_503_while_the_database_is_down_and_no_password_leaks(
    own_postgres: OwnPostgres, own_database: str, tmp_path: Path
) -> None:
    # The embedded server trusts local users, so any password gets in: a
    # distinctive one shows whether it ever reaches a reply or a log line.
    url = with_password(own_database, PASSWORD)
    server: RunningServer = serve(url, tmp_path / "server.log", workers=1)
    try:
        await create_coupon(server.base_url, "DOWN", 10)
        await asyncio.to_thread(own_postgres.stop, "immediate")
        status, code, took = await health(server.base_url)
        assert (status, code) == (503, "service_unavailable")
        assert took < PROMPT
        replies = []
        async with session(4) as http:
            for path in ("/api/coupons/DOWN", "/health"):
                async with http.get(f"{server.base_url}{path}") as response:
                    replies.append((response.status, await response.text(), response.headers))
            claim = {"user_id": "u", "coupon_name": "DOWN"}
            async with http.post(f"{server.base_url}/api/coupons/claim", json=claim) as response:
                replies.append((response.status, await response.text(), response.headers))
        for status, text, headers in replies:
            assert status == 503
            assert "Retry-After" in headers
            assert PASSWORD not in text
        await asyncio.to_thread(own_postgres.start)
        recovered = await wait_until_healthy(server.base_url, limit=RECOVERY_LIMIT)
        assert recovered, f"health did not recover within {RECOVERY_LIMIT:.0f} s"
    finally:
        assert server.stop() == 0
    assert PASSWORD not in server.log()
    assert "Traceback" not in server.log()


async def wait_until_healthy(base_url: str, limit: float) -> bool:
    deadline = time.monotonic() + limit
    for _ in range(int(limit / 0.1) + 1):
        if (await health(base_url))[0] == 200:
            return True
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    return False
