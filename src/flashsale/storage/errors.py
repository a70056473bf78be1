"""Driver failures become domain errors here, and only here."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg

from flashsale.domain import ServiceUnavailable

# What a database that is down, restarting, overloaded or unreachable raises.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, crash recovery
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections
    asyncpg.exceptions.QueryCanceledError,  # statement_timeout
    asyncpg.exceptions.LockNotAvailableError,  # lock_timeout
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.ReadOnlySQLTransactionError,  # failed over to a replica
    ConnectionError,
    OSError,
    TimeoutError,
)


@contextmanager
def database_unavailable_as_503() -> Iterator[None]:
    try:
        yield
    except UNAVAILABLE_ERRORS:
        raise ServiceUnavailable("the database is unavailable, retry shortly") from None
