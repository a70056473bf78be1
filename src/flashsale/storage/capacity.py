"""Whether the service's connections fit its PostgreSQL server, checked once
at start-up, before the workers open their pools: every worker keeps up to
DB_POOL_MAX connections, and a server that runs out answers the next login
with TooManyConnectionsError (53300), which requests see as 503s."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from flashsale.config import Settings
from flashsale.storage.queries import startup_query


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
