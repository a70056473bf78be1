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


# What says the pooled connections no longer reach a writable primary: the
# server went away, restarts, or was demoted to a replica (a connection kept
# from before a failover fails writes with SQLSTATE 25006). asyncpg's
# TargetServerAttributeNotMatched (an InternalClientError) means no listed
# host is the primary right now. Not TimeoutError: a busy pool is not a lost one.
LOST_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.ReadOnlySQLTransactionError,
    ConnectionError,
)
_NO_PRIMARY_ERRORS = (
    asyncpg.exceptions.ReadOnlySQLTransactionError,
    asyncpg.exceptions.TargetServerAttributeNotMatched,
)


def is_lost_connection(error: BaseException) -> bool:
    return isinstance(error, LOST_CONNECTION_ERRORS) or (
        isinstance(error, OSError) and not isinstance(error, TimeoutError)
    )


@contextmanager
def database_unavailable_as_503() -> Iterator[None]:
    try:
        yield
    except UNAVAILABLE_ERRORS as error:
        raise unavailable(error) from None


def unavailable(error: BaseException) -> ServiceUnavailable:
    """The 503 for a driver failure, reported, naming why (no driver text)."""
    _report(error)
    if isinstance(error, _NO_PRIMARY_ERRORS):
        return ServiceUnavailable(
            "no writable primary (the database is failing over), retry shortly"
        )
    if is_lost_connection(error):
        return ServiceUnavailable("the database is unreachable, retry shortly")
    return ServiceUnavailable("the database is unavailable, retry shortly")


def _report(error: BaseException) -> None:
    """Counted and logged by class only: driver messages may quote SQL or data."""
    # Imported here, in the workers: flashsale.metrics must not be imported
    # by the CLI process before it sets PROMETHEUS_MULTIPROC_DIR.
    from flashsale.metrics import count_database_error

    count_database_error(error)
    _log.warning(
        "database unavailable", error_kind=type(error).__name__, error_code="service_unavailable"
    )
