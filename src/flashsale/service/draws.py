"""Raffle draws with no request needed: one drawer task per worker.

Every worker of every instance ticks; the SQL does the exactly-once part
(schema.sql raffle_start_draws and raffle_draw_step): a due raffle is frozen
under its coupon's row lock (FOR UPDATE SKIP LOCKED, the primary key of
raffle_draws starts a draw once), then placed ``chunk`` entrants at a time,
one short transaction per step with its progress, each step under the
coupon's row lock. One worker steps a draw at a time (a transaction-level
advisory lock; the others leave it), and each step reads the progress the
previous one committed: nobody is placed twice, and a crash between steps
leaves the next tick (of any worker) to resume. A step of 5,000 places
stays well under a second (docs/benchmarks.md), so no transaction holds the
events feed back (postgres-pitfalls.md)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Protocol

from flashsale.service.periodic import Periodic

DRAW_SECONDS = 0.5  # a draw starts within about this long of draw_at
CHUNK = 5_000  # places per step: a step's transaction stays under ~0.5 s on a loaded machine
TICK_BUDGET = 5.0  # seconds of steps per tick before other work gets a turn
RAFFLES_PER_TICK = 10

log = logging.getLogger("flashsale.draws")


class DrawStore(Protocol):
    async def start_draws(self, limit: int) -> list[int]:
        """The raffles whose draw is to be stepped, frozen now if due."""

    async def draw_step(self, coupon_id: int, chunk: int) -> bool | None:
        """The next ``chunk`` places of a draw, one transaction; True when
        done, None when another session is stepping it."""


class Drawer(Periodic):
    def __init__(
        self,
        store: DrawStore,
        interval: float = DRAW_SECONDS,
        *,
        chunk: int = CHUNK,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._chunk = chunk
        self._clock = clock
        # A tick: every due or unfinished draw stepped, within the budget.
        super().__init__(
            partial(self.run, budget=TICK_BUDGET), interval, log=log, what="raffle draw"
        )
        self.steps = 0  # steps this worker ran (tests, logs)

    async def run(self, *, budget: float) -> bool:
        """Steps draws until none is left to this worker or ``budget``
        seconds passed; True then, False when the budget ran out. A draw
        another worker is stepping is left to it. Raises what the store raises."""
        until = self._clock() + budget
        for coupon_id in await self._store.start_draws(RAFFLES_PER_TICK):
            while (done := await self._store.draw_step(coupon_id, self._chunk)) is False:
                self.steps += 1
                if self._clock() >= until:
                    return False
            if done:
                self.steps += 1
                log.info("raffle %d drawn", coupon_id)
        return True
