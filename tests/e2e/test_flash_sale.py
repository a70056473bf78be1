"""Many real concurrent requests against ``flashsale serve`` processes, then
the database is asked whether anything was oversold, doubled or lost."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import pytest

from flashsale.bench.server import RunningServer
from tests.support.invariants import assert_a_greedy_user_wins_once, assert_invariants
from tests.support.load import (
    claim_requests,
    create_coupon,
    granted,
    outcomes,
    post_all_answered,
)
from tests.support.servers import serve, served

STRATEGIES = ["batched", "transaction"]


async def assert_claimed_by(db: asyncpg.Connection[Any], coupon: str, winners: set[str]) -> None:
    rows = await db.fetch("SELECT user_id FROM claims WHERE coupon_name = $1", coupon)
    assert {row["user_id"] for row in rows} == winners


@pytest.fixture(params=STRATEGIES)
def server(request: pytest.FixtureRequest, database: str, tmp_path: Path) -> Any:
    env = {"CLAIM_STRATEGY": request.param}
    with served(database, tmp_path / "server.log", workers=2, env=env) as live:
        yield live


async def test_a_flash_sale_of_100_among_1000_users_sells_exactly_100(
    server: RunningServer, db: asyncpg.Connection[Any]
) -> None:
    await create_coupon(server.base_url, "FLASH", 100)
    users = [f"user-{i}" for i in range(1000)]
    answered = await post_all_answered(claim_requests([server.base_url], "FLASH", users))
    winners = granted(users, answered)
    assert len(winners) == 100
    losers = [r for u, r in zip(users, answered.replies, strict=True) if u not in winners]
    assert outcomes(losers) == {"409 sold_out": 900}
    await assert_claimed_by(db, "FLASH", winners)
    assert await db.fetchval("SELECT remaining_amount FROM coupons WHERE name = 'FLASH'") == 0
    await assert_invariants(db)


async def test_one_user_claiming_100_times_at_once_gets_exactly_one(
    server: RunningServer, db: asyncpg.Connection[Any]
) -> None:
    await assert_a_greedy_user_wins_once(server.base_url, db)


async def test_two_server_processes_sharing_one_database_still_sell_exactly_100(
    database: str, db: asyncpg.Connection[Any], tmp_path: Path
) -> None:
    first = serve(database, tmp_path / "first.log", workers=1)
    second = serve(database, tmp_path / "second.log", workers=1)
    try:
        await create_coupon(first.base_url, "SHARED", 100)
        users = [f"user-{i}" for i in range(1000)]
        answered = await post_all_answered(
            claim_requests([first.base_url, second.base_url], "SHARED", users)
        )
        winners = granted(users, answered)
        assert len(winners) == 100
        losers = [r for u, r in zip(users, answered.replies, strict=True) if u not in winners]
        assert outcomes(losers) == {"409 sold_out": 900}
        await assert_claimed_by(db, "SHARED", winners)
        await assert_invariants(db)
    finally:
        assert first.stop() == 0
        assert second.stop() == 0


async def test_many_coupons_at_once_each_sell_their_own_stock(
    server: RunningServer, db: asyncpg.Connection[Any]
) -> None:
    stocks = {"MIX_A": 5, "MIX_B": 50, "MIX_C": 500}
    for name, amount in stocks.items():
        await create_coupon(server.base_url, name, amount)
    answered = await post_all_answered(
        [
            (
                f"{server.base_url}/api/coupons/claim",
                {"user_id": f"u{i % 200}", "coupon_name": name},
            )
            for i in range(600)
            for name in stocks
        ]
    )
    assert {reply.status for reply in answered.replies} == {200, 409}
    for name, amount in stocks.items():
        sold = await db.fetchval("SELECT count(*) FROM claims WHERE coupon_name = $1", name)
        assert sold == min(amount, 200)
    await assert_invariants(db)
