"""Behind PgBouncer in transaction mode, the service's timeouts reach every
server connection (PgBouncer's connect_query, deploy/pgbouncer/pgbouncer.ini),
while an operator's direct session as the same role keeps PostgreSQL's
defaults (migration 0016)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg

from flashsale.storage.queries import query
from tests.support.cluster import start_instances, stop_all
from tests.support.topology import PgBouncer


async def test_pooled_sessions_carry_the_configured_timeouts_and_direct_ones_do_not(
    pgbouncer: PgBouncer, database: str, folder: Path
) -> None:
    [instance] = start_instances(
        pgbouncer.url_for(database), folder, 1, {"DB_STATEMENT_TIMEOUT": "2"}
    )
    try:
        # Five transactions open at once hold five server connections: more
        # than the instance's pool ever opened, so PgBouncer opens some for
        # them, and only its connect_query can have given them the timeouts.
        pooled = [
            await asyncpg.connect(pgbouncer.url_for(database), statement_cache_size=0)
            for _ in range(5)
        ]
        operator = await asyncpg.connect(database)
        try:
            for connection in pooled:
                await connection.transaction().start()
            rows = await asyncio.gather(*(c.fetchrow(query("session_timeouts")) for c in pooled))
            backends = {await c.fetchval("SELECT pg_backend_pid()") for c in pooled}
            direct = await operator.fetchrow(query("session_timeouts"))
        finally:
            for connection in [*pooled, operator]:
                await connection.close()
    finally:
        stop_all([instance])
    assert len(backends) == 5
    assert {tuple(row.values()) for row in rows if row is not None} == {("2s", "2s", "4s")}
    assert direct is not None
    assert tuple(direct.values()) == ("0", "0", "0")
    # The start-up check knew it spoke to a pooler, whose limits it cannot read.
    assert "client connections to a pooler" in instance.log()
