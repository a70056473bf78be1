"""The asyncpg pool every query goes through, with the timeouts that keep a
stalled database from turning into a pile of waiting requests."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

import asyncpg
import asyncpg.pool

from flashsale.config import Settings
from flashsale.storage.errors import is_lost_connection

if TYPE_CHECKING:
    Pool: TypeAlias = asyncpg.Pool[asyncpg.Record]
    Connection: TypeAlias = asyncpg.pool.PoolConnectionProxy[asyncpg.Record]
else:  # the runtime classes are not subscriptable
    Pool = asyncpg.Pool
    Connection = asyncpg.pool.PoolConnectionProxy


async def create_pool(settings: Settings, *, dsn: str | None = None) -> Pool:
    """The server-side timeouts (statement_timeout, lock_timeout,
    idle_in_transaction_session_timeout) are not sent here: a transaction-mode
    pooler refuses them as startup parameters (PgBouncer: "unsupported startup
    parameter") and a session SET would leak to other clients of the same
    server connection. Start-up stores them as this role's defaults in the
    database instead (storage.session_defaults), which PostgreSQL applies to
    every backend it starts, pooled or not, at no cost per query."""
    pool = await asyncpg.create_pool(
        dsn or settings.dsn(),
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        # No command_timeout: its expiry sends a CancelRequest, which would cut
        # a commit's wait for its synchronous standby short and leave the
        # commit visible although a failover can lose it (see writes.py).
        # Writes are bounded by abandoning the connection (writes.py), reads
        # by an explicit timeout per call and by statement_timeout. The stored
        # statement_timeout never fires during that wait (PostgreSQL disables
        # it before committing each statement); lock_timeout only fires before
        # anything is committed: both stay.
        command_timeout=None,
        timeout=settings.db_acquire_timeout + 3,
        # 0 behind PgBouncer < 1.21 in transaction mode: a named prepared
        # statement lives on one server connection, the next transaction may
        # run on another ("prepared statement does not exist" or
        # DuplicatePreparedStatementError). asyncpg then uses the unnamed one.
        statement_cache_size=settings.db_statement_cache_size,
        # application_name is one of the parameters PgBouncer tracks per
        # client and passes on, so it may stay a startup parameter.
        server_settings={"application_name": "flashsale"},
        reset=keep_session,
    )
    assert pool is not None
    return pool


async def forget_lost_connections(pool: Pool, error: BaseException) -> None:
    """After an error that says the pool lost its primary (crash, failover,
    demotion), every pooled connection is stale, not just the one that failed:
    expire them all at once, so each is replaced on its next acquire by a fresh
    connection to whichever host is the primary now, instead of each failing a
    request of its own first."""
    if is_lost_connection(error):
        await pool.expire_connections()


async def keep_session(connection: asyncpg.Connection[asyncpg.Record]) -> None:
    """What a pooled connection goes through on release, after asyncpg's own
    part (roll back an open transaction, drop listeners): nothing more.

    asyncpg's default also sends ``RESET ALL; UNLISTEN *; CLOSE ALL;
    pg_advisory_unlock_all()``: one more round trip per batch, a worker's CPU
    spent on every batch of a rush. Nothing here changes session state (no SET,
    LISTEN, advisory lock or cursor outside a transaction; migrations and
    their advisory lock use a connection of their own), and the timeouts are
    the role's stored defaults, so there is nothing to reset. That is also
    what a transaction-mode pooler requires: session state would leak.
    """
