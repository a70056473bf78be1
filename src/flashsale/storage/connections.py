"""How every store reaches the database: a pooled connection for a read, or
``write`` for a write that nothing on the service's side may cancel once sent
(storage/writes.py); driver failures become ServiceUnavailable either way."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from flashsale.config import Settings
from flashsale.storage.errors import UNAVAILABLE_ERRORS, unavailable
from flashsale.storage.pool import Connection, Pool, forget_lost_connections
from flashsale.storage.writes import Writes

T = TypeVar("T")


class Connections:
    def __init__(self, pool: Pool, acquire_timeout: float, *, statement_timeout: float) -> None:
        self._pool = pool
        self._acquire_timeout = acquire_timeout
        # The client-side bound of a read, and the time after which a write's
        # connection is abandoned: a dead server never answers statement_timeout.
        # (The pool has no command_timeout: its expiry is a CancelRequest.)
        self.read_timeout = statement_timeout + 1
        self._writes = Writes(pool, acquire_timeout, abandon_after=statement_timeout + 1)

    @classmethod
    def configured(cls, pool: Pool, settings: Settings) -> Connections:
        return cls(
            pool, settings.db_acquire_timeout, statement_timeout=settings.db_statement_timeout
        )

    @property
    def max_size(self) -> int:
        return self._pool.get_max_size()

    @property
    def acquire_timeout(self) -> float:
        return self._acquire_timeout

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        """A pooled connection for a read, or 503 once the pool has been busy
        for too long or the database is gone (then every pooled connection is
        dropped at once, so the next ones reach whichever host is primary)."""
        try:
            async with self._pool.acquire(timeout=self._acquire_timeout) as connection:
                yield connection
        except UNAVAILABLE_ERRORS as error:
            await forget_lost_connections(self._pool, error)
            raise unavailable(error) from None

    async def write(self, work: Callable[[Connection], Awaitable[T]]) -> T:
        """``work`` run to completion on a pooled connection, whatever happens
        to the caller (a request deadline answers 503 while the commit goes on)."""
        return await self._writes.run(work)

    async def wait_for_writes(self) -> None:
        """Until every write sent so far has finished (graceful shutdown)."""
        await self._writes.wait()

    async def drop_all(self) -> None:
        """Every pooled connection closes on its next release (a demoted primary)."""
        await self._pool.expire_connections()
