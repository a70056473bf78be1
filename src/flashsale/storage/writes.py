"""Writes that nothing on the service's side can cancel once sent.

With synchronous replication (Patroni's synchronous_mode) a commit is written
locally first, then waits until the synchronous standby has flushed it; it
stays invisible to other sessions, and keeps its row locks, until that wait
ends (xact.c RecordTransactionCommit -> SyncRepWaitForLSN). If the wait is cut
short by a cancel request or a terminated backend, PostgreSQL only logs
  WARNING: canceling wait for synchronous replication due to user request
  DETAIL: The transaction has already committed locally, but might not have
          been replicated to the standby.
and the commit becomes visible on the primary although a failover to the
standby can still take it back: a later `already_claimed` or GET would then
acknowledge a claim that can be lost. So a write is never cancelled here:

- asyncpg sends a CancelRequest when a query's awaiting task is cancelled or
  its timeout fires. Each write runs in a task of its own that its caller only
  waits for through ``asyncio.shield``: a request whose deadline passes answers
  503 (outcome unknown) while the task, and the commit, go on.
- The pool has no ``command_timeout`` (its expiry is a CancelRequest too).
  A write to a server that never answers is bounded here instead by
  *abandoning* the connection: ``terminate()`` closes the socket and sends
  nothing. A backend waiting for its standby does not read from its client,
  so it does not notice, and the commit completes when the standby returns.
  (Do not set ``client_connection_check_interval`` on the server: it would
  turn a closed socket into a terminated backend.)
- ``statement_timeout`` is disabled before the commit of each statement
  (postgres.c finish_xact_command), so it never fires during the wait;
  ``lock_timeout`` only fires while waiting for a lock, before anything is
  committed, and rolls the statement back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from flashsale.domain import ServiceUnavailable
from flashsale.storage.errors import UNAVAILABLE_ERRORS, unavailable
from flashsale.storage.pool import Connection, Pool, forget_lost_connections

T = TypeVar("T")


class Writes:
    """Runs each write on a pooled connection, to completion."""

    def __init__(self, pool: Pool, acquire_timeout: float, abandon_after: float) -> None:
        self._pool = pool
        self._acquire_timeout = acquire_timeout
        self._abandon_after = abandon_after
        self._running: set[asyncio.Task[Any]] = set()

    async def run(self, work: Callable[[Connection], Awaitable[T]]) -> T:
        task = asyncio.get_running_loop().create_task(self._run(work))
        self._running.add(task)
        task.add_done_callback(self._finished)
        # A cancelled caller (request deadline, client gone) stops waiting
        # here; the task, its statement and its commit carry on.
        return await asyncio.shield(task)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._running.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: its caller may be gone

    async def _run(self, work: Callable[[Connection], Awaitable[T]]) -> T:
        abandoned = False
        try:
            async with self._pool.acquire(timeout=self._acquire_timeout) as connection:

                def abandon() -> None:
                    nonlocal abandoned
                    abandoned = True
                    connection.terminate()  # no CancelRequest: see the module's docstring

                timer = asyncio.get_running_loop().call_later(self._abandon_after, abandon)
                try:
                    return await work(connection)
                finally:
                    timer.cancel()
        except UNAVAILABLE_ERRORS as error:
            if abandoned:
                raise ServiceUnavailable(
                    "the database did not confirm the write in time, retry shortly"
                ) from None
            await forget_lost_connections(self._pool, error)
            raise unavailable(error) from None

    async def wait(self) -> None:
        """Until every write sent so far has finished (graceful shutdown)."""
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
