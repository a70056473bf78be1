"""Waiting for a condition the database reports, instead of sleeping for a
while and hoping the other side got there: the suite runs on loaded machines."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg

# Generous: a loaded machine is slow, never this slow.
DEADLINE = 60.0


async def wait_until_blocked(observer: asyncpg.Connection[Any], *, by: int | None = None) -> None:
    """Until some backend waits for a lock held by the backend ``by`` (a
    pid; ``observer``'s own when None). pg_blocking_pids reads the lock
    manager at each call, so polling sees a wait as soon as it begins, from
    any connection, inside a transaction or not (pg_stat_activity would be
    frozen at its first read within a transaction)."""
    holder = by if by is not None else observer.get_server_pid()
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if await observer.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_locks AS l"
            " WHERE NOT l.granted AND $1 = ANY (pg_blocking_pids(l.pid)))",
            holder,
        ):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"no backend waited for a lock of backend {holder} in {DEADLINE:.0f} s")
