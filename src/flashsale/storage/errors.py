"""Driver failures become domain errors here, and only here."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg

from flashsale.domain import ServiceUnavailable
from flashsale.logs import get_logger

_log = get_logger("flashsale.storage")

# What a database that is down, restarting, overloaded or unreachable raises.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    # A pooled connection that got the server's FATAL "terminating connection"
    # while idle is stuck consuming that error; its next query raises this.
    asyncpg.exceptions.InternalClientError,
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


class DatabaseUnreachable(Exception):
    """A command (serve's start-up, verify) could not use the database; the
    message names the driver's exception class only (its text may hold SQL,
    data or, for connection errors, the DSN)."""


# What a command outside a request may meet: no server, a refused login, a
# failed statement. Requests use UNAVAILABLE_ERRORS and answer 503 instead.
COMMAND_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


@contextmanager
def unreachable_as_error() -> Iterator[None]:
    try:
        yield
    except COMMAND_ERRORS as error:
        raise DatabaseUnreachable(type(error).__name__) from None


@contextmanager
def database_unavailable_as_503() -> Iterator[None]:
    try:
        yield
    except UNAVAILABLE_ERRORS as error:
        _report(error)
        raise ServiceUnavailable("the database is unavailable, retry shortly") from None


def _report(error: BaseException) -> None:
    """Counted and logged by class only: driver messages may quote SQL or data."""
    # Imported here, in the workers: flashsale.metrics must not be imported
    # by the CLI process before it sets PROMETHEUS_MULTIPROC_DIR.
    from flashsale.metrics import count_database_error

    count_database_error(error)
    _log.warning(
        "database unavailable", error_kind=type(error).__name__, error_code="service_unavailable"
    )
