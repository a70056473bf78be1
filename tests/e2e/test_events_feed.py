"""The events feed from live servers: a consumer paging GET /api/events
through a rush of claims, releases, redemptions and expiries on several
coupons, served by two ``flashsale serve`` processes, ends with exactly the
changes the tables record, each once, in seq order per coupon; the SSE
stream delivers the feed live and resumes after Last-Event-ID."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import httpx
import pytest

from flashsale.bench.server import RunningServer
from tests.support.events import changes_in_database
from tests.support.invariants import assert_invariants
from tests.support.load import claim_all, post_all
from tests.support.servers import read_until_closed, serve, two_instances, workers_killed_late

COUPONS = ["EV1", "EV2", "EV3"]


@pytest.fixture
def servers(database: str, tmp_path: Path) -> Iterator[list[RunningServer]]:
    with two_instances(database, tmp_path, workers=1) as live:
        yield live


class FeedConsumer:
    """Pages GET /api/events in a loop, from each server in turn, until told
    to stop; keeps every event in the order received."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self.events: list[dict[str, Any]] = []
        self.stopped = asyncio.Event()

    async def run(self) -> None:
        after: str | None = None
        async with aiohttp.ClientSession() as session:
            for turn in range(10**9):
                params = {"limit": "50", **({"after": after} if after else {})}
                url = f"{self.urls[turn % len(self.urls)]}/api/events"
                async with session.get(url, params=params) as response:
                    assert response.status == 200, await response.text()
                    page = await response.json()
                self.events += page["events"]
                after = page["next"]
                if not page["events"]:
                    if self.stopped.is_set():
                        return
                    await asyncio.sleep(0.02)


async def request(session: aiohttp.ClientSession, method: str, url: str) -> int:
    async with session.request(method, url) as response:
        return response.status


async def rush(urls: list[str], db: asyncpg.Connection[Any]) -> None:
    """Claims at sell-out, releases and redemptions of holders, and holds
    brought forward to expire within 2 s (as admin.sql schedule_expiries
    does), on every coupon at once; then claims of the returned units."""
    rng = random.Random(10)
    first = [f"u{i}" for i in range(120)]
    await asyncio.gather(*(claim_all(urls, name, first) for name in COUPONS))
    async with aiohttp.ClientSession() as session:
        changes = []
        for name in COUPONS:
            won = await db.fetchval(
                "SELECT array_agg(user_id ORDER BY user_id) FROM claims WHERE coupon_name = $1",
                name,
            )
            holders = rng.sample(won, 30)
            for user in holders[:10]:
                changes.append(("DELETE", f"/api/coupons/{name}/claims/{user}"))
            for user in holders[10:20]:
                changes.append(("POST", f"/api/coupons/{name}/claims/{user}/redeem"))
            await db.execute(
                "UPDATE claims SET expires_at = now() + random() * 2 * interval '1 second'"
                " WHERE coupon_name = $1 AND user_id = ANY ($2::text[])",
                name,
                holders[20:],
            )
        statuses = await asyncio.gather(
            *(request(session, m, urls[i % 2] + path) for i, (m, path) in enumerate(changes)),
            *(claim_all(urls, name, [f"n{i}" for i in range(60)]) for name in COUPONS),
        )
    assert Counter(statuses[: len(changes)]) == Counter({204: 30, 200: 30})


async def settle(db: asyncpg.Connection[Any]) -> None:
    """Every hold left expires now and the sweepers take them: the tables
    stop changing (redeemed claims never expire)."""
    await db.execute("UPDATE claims SET expires_at = now() WHERE redeemed_at IS NULL")
    for _ in range(300):
        if await db.fetchval("SELECT count(*) FROM claims WHERE redeemed_at IS NULL") == 0:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the sweepers left holds behind")


async def test_a_consumer_paging_through_a_rush_gets_every_change_once_in_seq_order(
    servers: list[RunningServer], db: asyncpg.Connection[Any]
) -> None:
    urls = [s.base_url for s in servers]
    creations = [
        (f"{urls[0]}/api/coupons", {"name": name, "amount": 60, "hold_seconds": 10})
        for name in COUPONS
    ]
    assert [r.status for r in await post_all(creations)] == [201] * 3
    consumer = FeedConsumer(urls)
    consuming = asyncio.create_task(consumer.run())
    await rush(urls, db)
    await settle(db)
    total = await db.fetchval("SELECT count(*) FROM events")
    for _ in range(600):
        if len(consumer.events) >= total:
            break
        await asyncio.sleep(0.1)
    consumer.stopped.set()
    await asyncio.wait_for(consuming, 30)

    events = consumer.events
    ids = await db.fetchval("SELECT array_agg(id ORDER BY id) FROM events")
    received = Counter(e["id"] for e in events)
    assert sorted(received) == ids, (set(ids) - set(received), set(received) - set(ids))
    assert len(events) == total, [i for i, n in received.items() if n > 1]  # each once
    seqs: dict[str, list[int]] = {}
    for event in events:
        seqs.setdefault(event["coupon_name"], []).append(event["seq"])
    for name in COUPONS:  # in seq order per coupon, no gaps
        assert seqs[name] == list(range(1, len(seqs[name]) + 1))
        assert seqs[name][-1] == await db.fetchval(
            "SELECT event_seq FROM coupons WHERE name = $1", name
        )
    got = Counter(
        (e["coupon_name"], e["user_id"], e["type"]) for e in events if e["user_id"] is not None
    )
    assert got == await changes_in_database(db)
    kinds = Counter(e["type"] for e in events)
    assert (kinds["released"], kinds["redeemed"]) == (30, 30)
    assert kinds["expired"] > 0
    await assert_invariants(db)


async def sse_messages(response: httpx.Response) -> AsyncIterator[dict[str, str]]:
    """Each message of a text/event-stream as its fields (comments left out)."""
    message: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line == "":
            if message:
                yield message
            message = {}
        elif not line.startswith(":"):
            field, _, value = line.partition(":")
            message[field] = value.removeprefix(" ")


async def read_stream(
    url: str, count: int, headers: dict[str, str] | None = None
) -> list[dict[str, str]]:
    """The first ``count`` events of a stream, then the connection closed."""
    received: list[dict[str, str]] = []
    async with (
        httpx.AsyncClient(timeout=30) as client,
        client.stream("GET", url, headers=headers) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for message in sse_messages(response):
            if "data" in message:
                received.append(message)
            if len(received) == count:
                break
    return received


async def test_the_stream_delivers_events_live_and_resumes_after_last_event_id(
    servers: list[RunningServer],
) -> None:
    base = servers[0].base_url
    url = f"{servers[1].base_url}/api/events/stream"
    await post_all([(f"{base}/api/coupons", {"name": "SSE", "amount": 20})])

    async def claims_later(users: list[str]) -> None:
        await asyncio.sleep(0.5)  # the stream is open and caught up by then
        await claim_all([base], "SSE", users)

    live, _ = await asyncio.gather(read_stream(url, 6), claims_later([f"a{i}" for i in range(5)]))
    await claim_all([base], "SSE", [f"b{i}" for i in range(5)])  # while nobody listens
    resumed = await read_stream(url, 5, headers={"Last-Event-ID": live[-1]["id"]})

    events = [json.loads(m["data"]) for m in live + resumed]
    assert [e["seq"] for e in events] == list(range(1, 12))  # nothing lost, nothing twice
    assert [m["event"] for m in live + resumed] == [e["type"] for e in events]
    assert {e["user_id"] for e in events[6:]} == {f"b{i}" for i in range(5)}
    after = await read_stream(f"{url}?after={live[0]['id']}", 10)
    assert [json.loads(m["data"])["seq"] for m in after] == list(range(2, 12))


def test_open_streams_do_not_hold_up_a_server_shutdown(database: str, tmp_path: Path) -> None:
    server = serve(database, tmp_path / "server.log", workers=1)
    ended: list[str] = []
    reader = threading.Thread(
        target=read_until_closed, args=(f"{server.base_url}/api/events/stream", ended)
    )
    reader.start()
    time.sleep(1.5)  # the stream is open and polling
    assert ended == []
    assert server.stop() == 0
    reader.join(timeout=60)
    assert ended == ["closed"]
    # Granian would wait for the open stream until it kills the worker (8 s).
    assert workers_killed_late(server.log(), kill_timeout_s=8) == []
