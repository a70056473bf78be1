"""The live dashboard's server-sent events, from a real server."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from flashsale.bench.server import RunningServer
from flashsale.service.dashboard import TICK_SECONDS
from tests.support.load import claim_all, create_coupon
from tests.support.servers import read_until_closed, serve, workers_killed_late


async def snapshots(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    event = None
    async for line in response.aiter_lines():
        if line.startswith("event:"):
            event = line.partition(":")[2].strip()
        elif line.startswith("data:") and event == "snapshot":
            yield json.loads(line.partition(":")[2])


def tile(snapshot: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((c for c in snapshot["coupons"] if c["name"] == name), None)


async def test_dashboard_events_show_the_stock_drain_and_the_claimers(
    live_server: RunningServer,
) -> None:
    await create_coupon(live_server.base_url, "LIVE", 50)
    url = f"{live_server.base_url}/dashboard/events"
    async with httpx.AsyncClient(timeout=30) as client, client.stream("GET", url) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        seen_full = seen_drained = False
        busy = 0.0
        async for snapshot in snapshots(response):
            assert snapshot["database"] == "ok"
            coupon = tile(snapshot, "LIVE")
            assert coupon is not None
            if not seen_full:
                assert coupon["remaining_amount"] == 50
                seen_full = True
                replies = await claim_all([live_server.base_url], "LIVE", ["ann", "bob", "cy"])
                assert {reply.status for reply in replies} == {200}
                continue
            busy = max(busy, coupon["claims_per_second"])
            if coupon["remaining_amount"] == 47 and busy > 0:
                assert sorted(coupon["recent_claimers"]) == ["ann", "bob", "cy"]
                seen_drained = True
                break
    assert seen_drained


def test_open_dashboards_do_not_hold_up_a_server_shutdown(database: str, tmp_path: Path) -> None:
    server = serve(database, tmp_path / "server.log", workers=2)
    ended: list[str] = []
    readers = [
        threading.Thread(
            target=read_until_closed,
            args=(f"{server.base_url}/dashboard/events", ended),
            daemon=True,
        )
        for _ in range(4)
    ]
    for reader in readers:
        reader.start()
    time.sleep(1.5)  # every stream is open and ticking
    assert ended == []
    assert server.stop() == 0
    for reader in readers:
        reader.join(timeout=60)
    assert ended == ["closed"] * 4
    # Granian would wait for open streams until it kills the worker (8 s),
    # and say so: the streams ended the workers' wait instead.
    assert workers_killed_late(server.log(), kill_timeout_s=8) == []


async def session_activity(database: str) -> set[tuple[int, Any]]:
    """(session, start of its last statement) for the service's sessions:
    any query, a dashboard's poll included, changes it. The hold sweeper's,
    the webhook deliverer's and the raffle drawer's statements (every
    worker, every 0.5 s, watched or not) are left out."""
    connection = await asyncpg.connect(database)
    try:
        rows = await connection.fetch(
            "SELECT pid, query_start FROM pg_stat_activity"
            " WHERE application_name = 'flashsale' AND datname = current_database()"
            " AND query NOT LIKE '%expire_holds%' AND query NOT LIKE '%webhook%'"
            " AND query NOT LIKE '%raffle_start_draws%'"
        )
    finally:
        await connection.close()
    return {(row["pid"], row["query_start"]) for row in rows}


async def test_a_dashboard_that_goes_away_stops_polling(
    live_server: RunningServer, database: str
) -> None:
    url = f"{live_server.base_url}/dashboard/events"
    async with httpx.AsyncClient(timeout=30) as client:
        async with client.stream("GET", url) as response:
            received = 0
            async for _snapshot in snapshots(response):
                received += 1
                if received == 1:
                    watching = await session_activity(database)
                if received == 3:
                    break
            assert await session_activity(database) != watching  # polls show up here
        for _ in range(4):
            async with client.stream("GET", url) as response:
                async for _snapshot in snapshots(response):
                    break
    # Polling stops: a server that noticed late (a loaded machine) polls a
    # little longer; one that never notices polls every tick forever.
    assert await goes_quiet(database, ticks_of_silence=4), "the dashboard went on polling"


async def goes_quiet(database: str, *, ticks_of_silence: int, deadline: float = 60) -> bool:
    """Whether the service's sessions run no query for ``ticks_of_silence``
    dashboard ticks in a row, within ``deadline`` seconds."""
    end = time.monotonic() + deadline
    last = await session_activity(database)
    quiet_since = time.monotonic()
    while time.monotonic() < end:
        await asyncio.sleep(0.25)
        now = await session_activity(database)
        if now != last:
            last, quiet_since = now, time.monotonic()
        elif time.monotonic() - quiet_since >= ticks_of_silence * TICK_SECONDS:
            return True
    return False
