"""Work that every worker repeats on a timer (the hold sweeper, the key
purge, the webhook watch, the raffle drawer): one task per worker, stopped
at shutdown, and one rule for a tick that fails (``tolerated``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

from flashsale.domain import ServiceUnavailable


class Periodic:
    """Runs ``work`` now and then every ``interval`` seconds after it ends;
    a failed round is logged to ``log`` as ``what`` and the loop goes on."""

    def __init__(
        self,
        work: Callable[[], Awaitable[Any]],
        interval: float,
        *,
        log: logging.Logger,
        what: str,
    ) -> None:
        self._work = work
        self._interval = interval
        self._log = log
        self._what = what
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task

    async def once(self) -> None:
        """One round, as the loop runs it: a failure ends the round only."""
        with tolerated(self._log, self._what):
            await self._work()

    async def _run(self) -> None:
        while True:
            await self.once()
            await asyncio.sleep(self._interval)


async def stop_task(task: asyncio.Task[Any] | None) -> None:
    """Cancels a task still running and waits until it has ended."""
    if task is not None and not task.done():
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


@contextmanager
def tolerated(log: logging.Logger, what: str) -> Iterator[None]:
    """A database that is away only delays the work to the next tick; any
    other failure is logged (by type: no secret in a log) and the loop goes
    on, since a bug must not stop the work for good."""
    try:
        yield
    except ServiceUnavailable:
        return
    except Exception as error:
        log.error("%s failed: %s", what, type(error).__name__)
