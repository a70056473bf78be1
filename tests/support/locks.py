"""Locks another session holds while a test watches the service wait on them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg


@asynccontextmanager
async def locked(db: asyncpg.Connection[Any], statement: str, *args: object) -> AsyncIterator[None]:
    """The locks ``statement`` takes, held in a transaction on ``db`` until
    the block ends; then rolled back, so the statement leaves nothing."""
    transaction = db.transaction()
    await transaction.start()
    try:
        await db.execute(statement, *args)
        yield
    finally:
        await transaction.rollback()


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
