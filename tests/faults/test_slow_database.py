"""A database that stalls (a table lock held elsewhere) or a pool that is
exhausted: requests get 503 within their bounds instead of piling up."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from tests.support.invariants import assert_invariants
from tests.support.load import create_coupon
from tests.support.locks import locked
from tests.support.servers import serve
from tests.support.traffic import PROMPT, Traffic, claim_once, session


async def get_status(http: aiohttp.ClientSession, url: str) -> tuple[int, str, float]:
    started = time.monotonic()
    async with http.get(url) as response:
        body = await response.json(content_type=None)
        return response.status, str(body.get("error", "")), time.monotonic() - started


async def stalled_requests(base_url: str, claims: int, reads: int) -> tuple[Traffic, list[float]]:
    """Claims and reads at once; returns the claims and the reads' latencies."""
    traffic = Traffic()
    async with session(claims + reads, timeout=30) as http:
        sends = [claim_once(http, base_url, "SLOW", f"user-{n}", traffic) for n in range(claims)]
        reply = await asyncio.gather(
            asyncio.gather(*sends),
            asyncio.gather(
                *(get_status(http, f"{base_url}/api/coupons/SLOW") for _ in range(reads))
            ),
        )
    for status, code, _ in reply[1]:
        assert (status, code) == (503, "service_unavailable")
    return traffic, [took for _, _, took in reply[1]]


@pytest.mark.parametrize(
    ("strategy", "env"),
    [
        # the lock wait hits lock_timeout (statement timeout) first
        ("batched", {"DB_STATEMENT_TIMEOUT": "1"}),
        # one connection per claim: the pool runs dry and acquisition times out
        ("transaction", {"DB_STATEMENT_TIMEOUT": "1"}),
        # the request deadline cuts a longer statement timeout short
        ("batched", {"DB_STATEMENT_TIMEOUT": "30", "REQUEST_TIMEOUT": "1.5"}),
    ],
)
async def test_a_stalled_database_turns_into_prompt_503s_and_service_resumes(
    database: str,
    db: asyncpg.Connection[asyncpg.Record],
    tmp_path: Path,
    strategy: str,
    env: dict[str, str],
) -> None:
    server = serve(
        database,
        tmp_path / "server.log",
        env={"CLAIM_STRATEGY": strategy, "DB_POOL_MAX": "2", "DB_ACQUIRE_TIMEOUT": "0.5", **env},
    )
    try:
        await create_coupon(server.base_url, "SLOW", 1000)
        async with locked(db, "LOCK TABLE coupons IN ACCESS EXCLUSIVE MODE"):
            traffic, reads = await stalled_requests(server.base_url, claims=300, reads=30)
        # Every request answered 503 while the lock is still held (an
        # unbounded wait would have lasted until the client gave up), and
        # each well before the 30 s statement timeout of the third case.
        assert traffic.outcomes() == {"503 service_unavailable": 300}
        slowest = max([*reads, *(s.latency for s in traffic.sent)])
        assert slowest < PROMPT, f"slowest reply took {slowest:.1f} s"
        after = Traffic()
        async with session(1) as http:
            await claim_once(http, server.base_url, "SLOW", "after", after)
        assert after.outcomes() == {"ok": 1}
    finally:
        assert server.stop() == 0
    await assert_invariants(db)
