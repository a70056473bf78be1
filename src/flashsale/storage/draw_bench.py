"""A raffle's draw measured straight on the database (``flashsale bench
--draw N``): N entrants loaded in one statement, then the draw stepped as
the drawer steps it (service/draws.py), each step timed: a step is one
autocommit statement, so the longest step is the draw's longest
transaction. Never used by the service itself."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from flashsale.storage.queries import admin_query, query


@dataclass(frozen=True, slots=True)
class DrawTiming:
    wall: float  # seconds from the freeze to the last step's commit
    longest: float  # the longest step (transaction), seconds
    steps: int
    backend_cpu: float  # CPU seconds of the session that drew (PostgreSQL's share)
    placed: int
    places_checked: int  # entries whose derived place checks out
    claims: int
    waitlisted: int


async def seed_raffle(url: str, name: str, amount: int, entries: int, seed: bytes) -> None:
    """Raffle ``name`` with ``entries`` entrants (user-1 ..), its draw not due yet."""
    connection = await asyncpg.connect(url)
    try:
        draw_at = datetime.now(UTC) + timedelta(hours=1)
        arguments = (name, amount, None, None, None, "raffle", draw_at, seed)
        await connection.execute(query("create_coupon"), *arguments)
        await connection.execute(admin_query("seed_raffle_entries"), name, entries)
        await connection.execute(admin_query("vacuum_raffle_entries"))
    finally:
        await connection.close()


async def timed_draw(url: str, name: str, chunk: int, cpu_of: Callable[[int], float]) -> DrawTiming:
    """The raffle's draw made due and run to the end on one session;
    ``cpu_of`` reads a local process's CPU seconds (0 when not local)."""
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(admin_query("make_draw_due"), name)
        pid: int = await connection.fetchval(admin_query("backend_pid"))
        cpu = cpu_of(pid)
        started = time.perf_counter()
        [coupon_id] = [row["coupon_id"] for row in await connection.fetch(query("start_draws"), 1)]
        longest, steps, done = time.perf_counter() - started, 1, False
        while not done:
            step = time.perf_counter()
            done = await connection.fetchval(query("draw_step"), coupon_id, chunk) is not False
            longest, steps = max(longest, time.perf_counter() - step), steps + 1
        wall, cpu = time.perf_counter() - started, cpu_of(pid) - cpu
        outcome = await connection.fetchrow(admin_query("draw_outcome"), name)
        assert outcome is not None
        return DrawTiming(wall, longest, steps, cpu, *outcome.values())
    finally:
        await connection.close()
