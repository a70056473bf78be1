"""A pooled connection, or 503: the one way every store reaches the database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from flashsale.storage.errors import database_unavailable_as_503
from flashsale.storage.pool import Connection, Pool


class Connections:
    """The pool as the stores see it: a connection within ``acquire_timeout``,
    driver failures turned into ServiceUnavailable (storage/errors.py)."""

    def __init__(self, pool: Pool, acquire_timeout: float) -> None:
        self._pool = pool
        self._acquire_timeout = acquire_timeout

    @property
    def max_size(self) -> int:
        return self._pool.get_max_size()

    @property
    def acquire_timeout(self) -> float:
        return self._acquire_timeout

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        """A pooled connection, or 503 once the pool has been busy for too long."""
        with database_unavailable_as_503():
            async with self._pool.acquire(timeout=self._acquire_timeout) as connection:
                yield connection
