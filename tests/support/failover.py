"""Timings around a failover, measured from outside: when a node becomes the
writable primary (Patroni's REST API answers /primary with 200), and when the
service's claims succeed again."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

from tests.support.load import create_coupon
from tests.support.patroni import Node
from tests.support.servers import serve
from tests.support.traffic import Traffic, claim_loop

# The service's settings in the failover tests: short, so a lost primary
# shows within seconds.
REQUEST_TIMEOUT = 3.0
SERVICE_ENV = {
    "DB_ACQUIRE_TIMEOUT": "1",
    "DB_STATEMENT_TIMEOUT": "2",
    "REQUEST_TIMEOUT": str(REQUEST_TIMEOUT),
}


@asynccontextmanager
async def claims_rush(
    database_url: str,
    folder: Path,
    coupon: str,
    *,
    clients: int,
    tag: str,
    env: Mapping[str, str] = SERVICE_ENV,
) -> AsyncIterator[Traffic]:
    """A server (two workers) and ``clients`` claiming ``coupon`` without a
    pause until the block ends; the traffic records every answer."""
    server = serve(database_url, folder / "server.log", workers=2, env=env)
    traffic, stop = Traffic(), asyncio.Event()
    try:
        await create_coupon(server.base_url, coupon, 1_000_000)
        load = asyncio.create_task(
            claim_loop(server.base_url, coupon, traffic, stop, clients=clients, tag=tag)
        )
        yield traffic
        stop.set()
        await load
    finally:
        stop.set()
        server.stop()


async def promoted_at(candidates: list[Node], limit: float = 60) -> float | None:
    """The moment one of ``candidates`` first answers /primary with 200."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        for node in candidates:
            status, _ = await asyncio.to_thread(node.rest, "/primary", 0.5)
            if status == 200:
                return time.monotonic()
        await asyncio.sleep(0.05)
    return None


def last_success_before(traffic: Traffic, moment: float) -> float | None:
    done = [s.started + s.latency for s in traffic.sent if s.status == 200]
    before = [t for t in done if t <= moment]
    return max(before) if before else None


def timeline(traffic: Traffic, start: float, step: float = 0.5) -> str:
    """Outcomes by the time their answer came, in ``step`` buckets from ``start``."""
    buckets: dict[int, dict[str, int]] = {}
    for s in traffic.sent:
        slot = int((s.started + s.latency - start) // step)
        if slot >= -2:
            counts = buckets.setdefault(slot, {})
            counts[s.outcome] = counts.get(s.outcome, 0) + 1
    return "\n".join(f"{slot * step:+6.1f}s {buckets[slot]}" for slot in sorted(buckets))


def longest_gap(traffic: Traffic, start: float) -> float:
    """The longest time after ``start`` between two claims answered 200."""
    done = sorted(s.started + s.latency for s in traffic.sent if s.status == 200)
    after = [t for t in done if t >= start]
    before = [t for t in done if t < start]
    points = before[-1:] + after
    return max((b - a for a, b in itertools.pairwise(points)), default=0.0)
