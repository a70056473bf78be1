"""Start-up writes on the primary, whatever the order of the hosts in a
multi-host URL (``postgresql://u:p@h1:5432,h2:5432/db?target_session_attrs=...``).

asyncpg tries a multi-host URL's hosts in order, but a server error during
the connection (a standby that has not yet replayed CREATE DATABASE answers
InvalidCatalogNameError) ends the attempt at that host instead of moving on,
and "postgres" on a standby is not the primary's catalog. So start-up first
finds the one host that is not in recovery and runs every step against it
alone; serving keeps the full list (asyncpg with target_session_attrs=
read-write picks the primary again on each new connection, after a failover too).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from asyncpg.connect_utils import SessionAttribute

from flashsale.storage.queries import startup_query

T = TypeVar("T")
log = logging.getLogger("flashsale.storage")

ADMIN_DATABASE = "postgres"  # on every PostgreSQL cluster, primary and standbys alike
_PROBE_TIMEOUT = 5.0
_UNREACHABLE = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


class NoPrimaryError(ConnectionError):
    """No host of the URL answered as a primary."""


# What says "no primary right now" rather than "no database": a failover in
# progress, or a load balancer that still sends to a standby until its first
# health checks have run (HAProxy counts servers up until checks fail them).
_NO_PRIMARY_YET = (
    NoPrimaryError,
    asyncpg.exceptions.ReadOnlySQLTransactionError,  # SQLSTATE 25006 on a standby
    asyncpg.exceptions.TargetServerAttributeNotMatched,
    asyncpg.exceptions.CannotConnectNowError,  # starting up, or being promoted
)
PRIMARY_WAIT_SECONDS = 30.0


async def until_primary(step: Callable[[], Awaitable[T]], limit: float = PRIMARY_WAIT_SECONDS) -> T:
    """``step`` again until it runs on a primary, for up to ``limit`` seconds:
    a service started during a failover waits for the new leader."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while True:
        try:
            return await step()
        except _NO_PRIMARY_YET as error:
            if loop.time() >= deadline:
                raise
            log.warning("no writable primary yet (%s): retrying", type(error).__name__)
            await asyncio.sleep(0.5)


def url_hosts(dsn: str) -> list[str]:
    """The ``host[:port]`` entries of the URL's authority, in order."""
    netloc = urlsplit(dsn).netloc
    hosts = netloc.rpartition("@")[2]
    return [host for host in hosts.split(",") if host] or [hosts]


def with_host(dsn: str, host: str) -> str:
    """The URL naming only ``host`` (a ``host[:port]`` entry of url_hosts)."""
    parts = urlsplit(dsn)
    userinfo, at, _ = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{userinfo}{at}{host}"))


async def find_primary(dsn: str, *, statement_cache_size: int = 100) -> str:
    """``dsn`` narrowed to its primary host; unchanged when it names one host
    (a single server, or a pooler in front of the primary)."""
    hosts = url_hosts(dsn)
    if len(hosts) == 1:
        return dsn
    for host in hosts:
        single = with_host(dsn, host)
        if await _is_primary(single, statement_cache_size):
            return single
    raise NoPrimaryError(f"none of {len(hosts)} hosts is a primary")


async def _is_primary(dsn: str, statement_cache_size: int) -> bool:
    """Asked in the admin database: the service's own may not exist yet."""
    try:
        connection = await asyncpg.connect(
            dsn,
            database=ADMIN_DATABASE,
            timeout=_PROBE_TIMEOUT,
            statement_cache_size=statement_cache_size,
            # A standby refuses read-write; the question is asked below anyway.
            target_session_attrs=SessionAttribute.any,
        )
    except _UNREACHABLE:
        return False
    try:
        return not await connection.fetchval(startup_query("in_recovery"))
    except _UNREACHABLE:
        return False
    finally:
        await connection.close()
