"""Coalescing: callers that arrive while a key's previous batch is in flight
wait in that key's queue and go together in the next batch.

No timer: the first caller for an idle key starts a batch at once; the queue
only fills while the database is busy, so batches grow exactly as fast as the
database falls behind. At most one batch per key is in flight per process.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

from flashsale.domain import ServiceUnavailable

K = TypeVar("K", bound=Hashable)
I = TypeVar("I")  # noqa: E741 - item
O = TypeVar("O")  # noqa: E741 - outcome

RunBatch = Callable[[K, Sequence[I]], Awaitable[Sequence[O]]]
OnBatch = Callable[[int], None]  # told each batch's size as it is sent (metrics)


class _Lane(Generic[I, O]):
    __slots__ = ("waiting",)

    def __init__(self) -> None:
        self.waiting: deque[tuple[I, asyncio.Future[O]]] = deque()


class Coalescer(Generic[K, I, O]):
    def __init__(
        self,
        run_batch: RunBatch[K, I, O],
        *,
        max_batch: int,
        max_queue: int,
        on_batch: OnBatch | None = None,
    ) -> None:
        self._run_batch = run_batch
        self._on_batch = on_batch
        self._max_batch = max_batch
        self._max_queue = max_queue
        self._lanes: dict[K, _Lane[I, O]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def queued(self, key: K) -> int:
        lane = self._lanes.get(key)
        return len(lane.waiting) if lane else 0

    async def submit(self, key: K, item: I) -> O:
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane()
            task = asyncio.get_running_loop().create_task(self._drain(key, lane))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif len(lane.waiting) >= self._max_queue:
            raise ServiceUnavailable("too many claims waiting for this coupon, retry shortly")
        future: asyncio.Future[O] = asyncio.get_running_loop().create_future()
        lane.waiting.append((item, future))
        # A caller cancelled here (client gone) cancels only its own future;
        # the batch it may already be part of goes on, and what commits stands.
        return await future

    async def _drain(self, key: K, lane: _Lane[I, O]) -> None:
        try:
            while lane.waiting:
                await self._run_one_batch(key, lane)
        finally:
            del self._lanes[key]
            for _, future in lane.waiting:  # only if the drain itself was cancelled
                if not future.done():
                    future.set_exception(ServiceUnavailable("the service is shutting down"))

    async def _run_one_batch(self, key: K, lane: _Lane[I, O]) -> None:
        batch: list[tuple[I, asyncio.Future[O]]] = []
        while lane.waiting and len(batch) < self._max_batch:
            item, future = lane.waiting.popleft()
            if not future.cancelled():  # its caller left before it was sent
                batch.append((item, future))
        if not batch:
            return
        if self._on_batch is not None:
            self._on_batch(len(batch))
        try:
            outcomes = await self._run_batch(key, [item for item, _ in batch])
        except BaseException as error:  # every waiter learns, none hangs
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            if not isinstance(error, Exception):
                raise
            return
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if not future.done():
                future.set_result(outcome)

    async def close(self) -> None:
        """Wait for the batches in flight (graceful shutdown)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
