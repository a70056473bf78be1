"""The asyncpg pool every query goes through, with the timeouts that keep a
stalled database from turning into a pile of waiting requests."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, TypeAlias

import asyncpg
import asyncpg.pool

from flashsale.config import Settings
from flashsale.storage.errors import is_lost_connection
from flashsale.storage.timeouts import Timeouts, apply_timeouts

if TYPE_CHECKING:
    Pool: TypeAlias = asyncpg.Pool[asyncpg.Record]
    Connection: TypeAlias = asyncpg.pool.PoolConnectionProxy[asyncpg.Record]
else:  # the runtime classes are not subscriptable
    Pool = asyncpg.Pool
    Connection = asyncpg.pool.PoolConnectionProxy


async def create_pool(settings: Settings, *, dsn: str | None = None) -> Pool:
    """The server-side timeouts (statement_timeout, lock_timeout,
    idle_in_transaction_session_timeout) are not startup parameters: a
    transaction-mode pooler refuses them (PgBouncer: "unsupported startup
    parameter"). Each new connection takes them with one set_config instead
    (``init``), for its whole session, at no cost per query. Through
    PgBouncer that lands on one server connection; PgBouncer's own
    connect_query gives them to every server connection it opens, from what
    start-up stored (storage.timeouts, migration 0016)."""
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
        init=partial(apply_timeouts, timeouts=Timeouts.from_settings(settings)),
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
    pg_advisory_unlock_all()``: one more round trip per batch, about 3% of a
    worker's CPU in a rush. Nothing here changes session state (no SET,
    LISTEN, advisory lock or cursor outside a transaction; migrations and
    their advisory lock use a connection of their own), and the timeouts,
    set once per connection by ``init``, must stay. That is also
    what a transaction-mode pooler requires: session state would leak.
    """
