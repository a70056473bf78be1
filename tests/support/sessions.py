"""The service's own database sessions, as pg_stat_activity shows them: a
test that holds readers or claims open checks none of them keeps one busy."""

from __future__ import annotations

import asyncio

import asyncpg


async def busy_sessions(url: str) -> list[str]:
    """States of the service's database sessions other than idle ones."""
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            "SELECT state FROM pg_stat_activity"
            " WHERE application_name = 'flashsale' AND datname = current_database()"
            " AND state <> 'idle'"
        )
    finally:
        await connection.close()
    return [row["state"] for row in rows]


async def wait_until_idle(url: str, polls: int = 100) -> list[str]:
    """The busy sessions still there after up to ``polls`` polls 0.1 s apart;
    empty as soon as none is."""
    busy = await busy_sessions(url)
    for _ in range(polls):
        if not busy:
            break
        await asyncio.sleep(0.1)
        busy = await busy_sessions(url)
    return busy
