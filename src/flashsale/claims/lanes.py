"""Claim lanes: batches that span coupons.

A process has a few lanes; a coupon belongs to one of them by a stable hash
of its name, so at most one batch per coupon is in flight per process (as
with the one lane per coupon this replaces). A lane has one batch in
flight at a time, holding the parts of every coupon that was waiting in it:
one round trip and one transaction decide them all.

No timer: the first arrival in an idle lane starts a
batch at once; a batch closes when the lane's previous batch returns (its
waiting arrivals go together) or at ``max_batch`` arrivals. One coupon
takes at most ``coupon_share`` arrivals of a batch while other coupons
wait, so a hot coupon cannot starve the others (alone it may fill the
batch); the coupons still waiting go first in the next batch.

Backpressure is per coupon, as today: past ``max_queue`` arrivals waiting
for one coupon, the next answers ServiceUnavailable (503).
"""

from __future__ import annotations

import asyncio
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Generic, TypeVar

from flashsale.domain import ServiceUnavailable

I = TypeVar("I")  # noqa: E741 - item
O = TypeVar("O")  # noqa: E741 - outcome

# Runs a batch: its parts by coupon (in the order they joined it) to each
# part's outcomes in order, or the exception that fails that part only.
RunLane = Callable[[dict[str, list[I]]], Awaitable[dict[str, Sequence[O] | Exception]]]
# Told each batch as it is sent: (lane, arrivals, coupons, oldest arrival's wait in seconds).
OnLaneBatch = Callable[[int, int, int, float], None]
_Arrival = tuple[I, asyncio.Future[O], float]  # item, its caller's future, arrival time
_Waiting = deque[_Arrival[I, O]]
_Part = list[_Arrival[I, O]]


class _Lane(Generic[I, O]):
    __slots__ = ("number", "task", "waiting")

    def __init__(self, number: int) -> None:
        self.number = number
        self.waiting: dict[str, _Waiting[I, O]] = {}  # by coupon, oldest coupon first
        self.task: asyncio.Task[None] | None = None


class CouponLanes(Generic[I, O]):
    def __init__(
        self,
        run_batch: RunLane[I, O],
        *,
        lanes: int,
        max_batch: int,
        coupon_share: int,
        max_queue: int,
        on_batch: OnLaneBatch | None = None,
    ) -> None:
        self._run_batch = run_batch
        self._lanes: list[_Lane[I, O]] = [_Lane(number) for number in range(lanes)]
        self._max_batch = max_batch
        self._share = min(coupon_share, max_batch)
        self._max_queue = max_queue
        self._on_batch = on_batch

    def lane_of(self, coupon: str) -> int:
        """The coupon's lane: a hash that is the same in every process."""
        return zlib.crc32(coupon.encode()) % len(self._lanes)

    def queued(self, coupon: str) -> int:
        waiting = self._lanes[self.lane_of(coupon)].waiting.get(coupon)
        return len(waiting) if waiting else 0

    async def submit(self, coupon: str, item: I) -> O:
        lane = self._lanes[self.lane_of(coupon)]
        waiting = lane.waiting.get(coupon)
        if waiting is None:
            waiting = lane.waiting[coupon] = deque()
        elif len(waiting) >= self._max_queue:
            raise ServiceUnavailable("too many claims waiting for this coupon, retry shortly")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[O] = loop.create_future()
        waiting.append((item, future, loop.time()))
        if lane.task is None:
            lane.task = loop.create_task(self._drain(lane))
        # A caller cancelled here (client gone) cancels only its own future;
        # the batch it may already be part of goes on, and what commits stands.
        return await future

    async def _drain(self, lane: _Lane[I, O]) -> None:
        try:
            while lane.waiting:
                await self._run_one_batch(lane, self._take(lane))
        finally:
            lane.task = None
            for waiting in lane.waiting.values():  # only if the drain itself was cancelled
                for _, future, _ in waiting:
                    if not future.done():
                        future.set_exception(ServiceUnavailable("the service is shutting down"))
            lane.waiting.clear()

    def _take(self, lane: _Lane[I, O]) -> dict[str, _Part[I, O]]:
        """The next batch: up to ``coupon_share`` arrivals per coupon, oldest
        coupon first; then, if there is room, more of those still waiting."""
        batch: dict[str, _Part[I, O]] = {}
        room = self._max_batch
        for share in (self._share, self._max_batch):
            for coupon in list(lane.waiting):
                if room == 0:
                    return batch
                waiting = lane.waiting.pop(coupon)
                part = batch.setdefault(coupon, [])
                while waiting and len(part) < share and room > 0:
                    arrival = waiting.popleft()
                    if not arrival[1].cancelled():  # its caller left before it was sent
                        part.append(arrival)
                        room -= 1
                if not part:
                    del batch[coupon]
                if waiting:
                    lane.waiting[coupon] = waiting  # to the back: the others go first
        return batch

    async def _run_one_batch(self, lane: _Lane[I, O], batch: dict[str, _Part[I, O]]) -> None:
        if not batch:
            return
        if self._on_batch is not None:
            oldest = min(part[0][2] for part in batch.values())  # a part's first is its oldest
            size = sum(len(part) for part in batch.values())
            self._on_batch(
                lane.number, size, len(batch), asyncio.get_running_loop().time() - oldest
            )
        try:
            outcomes = await self._run_batch(
                {coupon: [item for item, _, _ in part] for coupon, part in batch.items()}
            )
        except BaseException as error:  # every waiter learns, none hangs
            _fail(batch.values(), error)
            if not isinstance(error, Exception):
                raise
            return
        for coupon, part in batch.items():
            answers = outcomes[coupon]
            if isinstance(answers, Exception):  # this coupon's part only
                _fail([part], answers)
                continue
            for (_, future, _), outcome in zip(part, answers, strict=True):
                if not future.done():
                    future.set_result(outcome)

    async def close(self) -> None:
        """Wait for the batches in flight and those already waiting (graceful shutdown)."""
        tasks = [lane.task for lane in self._lanes if lane.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


def _fail(parts: Iterable[_Part[I, O]], error: BaseException) -> None:
    for part in parts:
        for _, future, _ in part:
            if not future.done():
                future.set_exception(error)
