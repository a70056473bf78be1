"""The request deadline every use case runs under."""

from __future__ import annotations

import asyncio

from flashsale.domain import ServiceUnavailable


class deadline:
    """503 once ``seconds`` have passed, whatever the request waits on (a
    claim queue, the pool, a reconnect): a request never hangs. A claim cut
    off here may still commit with its batch; a retry then hears already_claimed.

    A timer that cancels the task, as asyncio.timeout does, at a fraction of
    its cost: it runs on every claim (docs/benchmarks.md)."""

    __slots__ = ("_expired", "_handle", "_seconds", "_task")

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds

    async def __aenter__(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        self._expired = False
        self._handle = asyncio.get_running_loop().call_later(self._seconds, self._expire)

    def _expire(self) -> None:
        self._expired = True
        self._task.cancel()

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, _: object
    ) -> None:
        self._handle.cancel()
        if self._expired and kind is asyncio.CancelledError and self._task.uncancel() == 0:
            raise ServiceUnavailable("the database is too slow to answer, retry shortly")
