"""A coupon with a million claimers, read over a real socket from
``flashsale serve``: the whole body arrives, in claim order, consistent with
the stock; readers that hang up and databases that fail mid-body leave no
connection behind. Speed and memory are measured by
``python -m flashsale.bench.huge_coupon`` (docs/benchmarks.md), not here."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import asyncpg
import httpx
import msgspec
import pytest

from flashsale.bench.server import RunningServer
from flashsale.storage.admin import seed_coupon
from tests.support.invariants import assert_invariants
from tests.support.servers import serve
from tests.support.sessions import wait_until_idle

CLAIMS = 1_000_000
COUPON = "HUGE"


@pytest.fixture(scope="module")
async def huge_database(module_database: str) -> str:
    """One database for the module: seeding a million claims takes seconds."""
    await seed_coupon(module_database, COUPON, CLAIMS, claims=CLAIMS)
    return module_database


@pytest.fixture(scope="module")
def huge_server(
    huge_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    server = serve(huge_database, tmp_path_factory.mktemp("huge") / "server.log", workers=2)
    yield server
    server.stop()


async def test_a_million_claimers_arrive_whole_in_claim_order_matching_the_stock(
    huge_server: RunningServer, huge_database: str
) -> None:
    async with httpx.AsyncClient(timeout=60) as client:
        response = await client.get(f"{huge_server.base_url}/api/coupons/{COUPON}")
    assert response.status_code == 200
    body = msgspec.json.decode(response.content)
    assert (body["name"], body["amount"], body["remaining_amount"]) == (COUPON, CLAIMS, 0)
    claimed_by = body["claimed_by"]
    assert len(claimed_by) == body["amount"] - body["remaining_amount"]
    assert claimed_by[:3] == ["user-1", "user-2", "user-3"]
    assert claimed_by == [f"user-{i}" for i in range(1, CLAIMS + 1)]
    connection = await asyncpg.connect(huge_database)
    try:
        await assert_invariants(connection)
    finally:
        await connection.close()


async def test_readers_that_hang_up_mid_body_give_their_connections_back(
    huge_server: RunningServer, huge_database: str
) -> None:
    url = f"{huge_server.base_url}/api/coupons/{COUPON}"
    async with httpx.AsyncClient(timeout=60) as client:
        for _ in range(12):  # more than the pools of both workers could lend out
            async with client.stream("GET", url) as response:
                assert response.status_code == 200
                async for _chunk in response.aiter_raw():
                    break  # hang up after the first chunk
        assert await wait_until_idle(huge_database) == []
        again = await client.get(url)
    assert again.status_code == 200
    assert len(msgspec.json.decode(again.content)["claimed_by"]) == CLAIMS


async def test_a_database_failure_mid_body_cuts_the_response_and_is_logged(
    huge_server: RunningServer, huge_database: str
) -> None:
    url = f"{huge_server.base_url}/api/coupons/{COUPON}"
    received: list[int] = []
    async with httpx.AsyncClient(timeout=60) as client, client.stream("GET", url) as response:
        assert response.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            await read_killing_the_session(response, huge_database, received)
    assert 0 < sum(received) < 13_000_000  # a cut body, not the 13.9 MB one
    assert await wait_until_idle(huge_database) == []
    await asyncio.sleep(0.2)
    assert "stream cut mid-body" in huge_server.log()


async def read_killing_the_session(
    response: httpx.Response, database: str, received: list[int]
) -> None:
    async for chunk in response.aiter_raw():
        if not received:
            # The body is far larger than the socket buffers, so the server is
            # still reading claimers: kill its database session.
            assert await terminate_stream_sessions(database) == 1
        received.append(len(chunk))


async def terminate_stream_sessions(url: str) -> int:
    connection = await asyncpg.connect(url)
    try:
        killed: int = await connection.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = 'flashsale' AND datname = current_database()"
            # The stream reads through the SQL cursor coupon_claimers.
            " AND (query LIKE 'FETCH FORWARD % FROM coupon_claimers'"
            "      OR query LIKE 'DECLARE coupon_claimers%')"
        )
    finally:
        await connection.close()
    return killed
