"""The asyncpg pool every query goes through, with the timeouts that keep a
stalled database from turning into a pile of waiting requests, and the
start-up check that every worker's pool fits the server: a server that runs
out of connections answers the next login with TooManyConnectionsError
(53300), which requests see as 503s."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, TypeAlias

import asyncpg
import asyncpg.pool

from flashsale.config import Settings
from flashsale.storage.errors import is_lost_connection
from flashsale.storage.queries import startup_query
from flashsale.storage.session_defaults import Timeouts, apply_timeouts

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
    start-up stored (storage.session_defaults, migration 0016)."""
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
    pg_advisory_unlock_all()``: one more round trip per batch, a worker's CPU
    spent on every batch of a rush. Nothing here changes session state (no SET,
    LISTEN, advisory lock or cursor outside a transaction; migrations and
    their advisory lock use a connection of their own), and the timeouts,
    set once per connection by ``init``, must stay. That is also
    what a transaction-mode pooler requires: session state would leak.
    """


class ConnectionsExceeded(Exception):
    """The configured pools cannot all connect; the message says what to change."""


@dataclass(frozen=True, slots=True)
class ServerCapacity:
    """What the server told about its connection slots (startup.sql
    connection_capacity)."""

    max_connections: int
    superuser_reserved: int
    reserved: int
    role_limit: int | None  # None: no CONNECTION LIMIT, or a superuser
    database_limit: int | None
    in_use: int
    through_pooler: bool

    @property
    def available(self) -> int:
        """Slots this service may take: the reserved ones are left to the
        operators (even when the service logs in as a superuser, which could
        take them), and each CONNECTION LIMIT applies."""
        limits = [self.max_connections - self.superuser_reserved - self.reserved]
        limits += [limit for limit in (self.role_limit, self.database_limit) if limit is not None]
        return min(limits)


def connections_needed(settings: Settings) -> int:
    """Every worker's pool full. Start-up's own connections are closed before
    the workers start."""
    return settings.workers * settings.db_pool_max


async def read_capacity(connection: asyncpg.Connection[asyncpg.Record]) -> ServerCapacity:
    row = await connection.fetchrow(startup_query("connection_capacity"))
    assert row is not None  # the current role and database exist

    def limit(value: int) -> int | None:
        return None if value < 0 or row["superuser"] else value

    return ServerCapacity(
        max_connections=row["max_connections"],
        superuser_reserved=row["superuser_reserved"],
        reserved=row["reserved"],
        role_limit=limit(row["role_limit"]),
        database_limit=limit(row["database_limit"]),
        in_use=row["in_use"],
        through_pooler=row["backend_pid"] != connection.get_server_pid(),
    )


def judge(capacity: ServerCapacity, settings: Settings) -> str:
    """A line for the log when the pools fit; ConnectionsExceeded otherwise."""
    needed = connections_needed(settings)
    pools = f"WEB_WORKERS={settings.workers} x DB_POOL_MAX={settings.db_pool_max} = {needed}"
    if capacity.through_pooler:
        return (
            f"connections: {pools} client connections to a pooler; PostgreSQL's "
            f"max_connections ({capacity.max_connections}) bounds the pooler's server "
            "connections, not these; the pooler's own limits (PgBouncer: max_client_conn, "
            "max_db_connections) are not visible from here: check them"
        )
    if needed > capacity.available:
        raise ConnectionsExceeded(
            f"{pools} connections, but PostgreSQL accepts {capacity.available} for this "
            f"service ({_slots(capacity)}): lower WEB_WORKERS or DB_POOL_MAX, raise "
            "max_connections on the server, or put PgBouncer in between"
        )
    line = f"connections: {pools} of {capacity.available} ({_slots(capacity)})"
    if needed + capacity.in_use > capacity.available:
        line += (
            f"; {capacity.in_use} are in use now by other sessions (other instances, "
            "a previous run, operators): they must go before every pool can fill"
        )
    return line


def _slots(capacity: ServerCapacity) -> str:
    parts = [
        f"max_connections {capacity.max_connections}",
        f"superuser_reserved_connections {capacity.superuser_reserved}",
        f"reserved_connections {capacity.reserved}",
    ]
    if capacity.role_limit is not None:
        parts.append(f"the role's CONNECTION LIMIT {capacity.role_limit}")
    if capacity.database_limit is not None:
        parts.append(f"the database's CONNECTION LIMIT {capacity.database_limit}")
    return ", ".join(parts)


async def check_connections(dsn: str, settings: Settings) -> str:
    """On the server ``dsn`` reaches (the primary): a log line, or
    ConnectionsExceeded."""
    connection = await asyncpg.connect(dsn, statement_cache_size=settings.db_statement_cache_size)
    try:
        capacity = await read_capacity(connection)
    finally:
        await connection.close()
    return judge(capacity, settings)
