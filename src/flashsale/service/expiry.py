"""Holds that expire with no request needed: one sweeper task per worker.

Every worker of every instance runs the same sweep every ``interval``
seconds; the SQL (expire_holds, schema.sql) takes each coupon with due holds
under ``FOR UPDATE SKIP LOCKED``, so concurrent sweepers split the work and
each hold is deleted, its unit returned and its end recorded exactly once.
With a 0.5 s interval a hold is gone within about half a second of its
``expires_at`` (the contract allows 2 s); reads already treat it as gone at
``expires_at`` itself, so no answer depends on the sweeper's timing."""

from __future__ import annotations

import logging
from collections.abc import Callable

from flashsale.service.periodic import Periodic
from flashsale.service.ports import HoldSweeper

SWEEP_SECONDS = 0.5

log = logging.getLogger("flashsale.expiry")


class HoldExpirer(Periodic):
    def __init__(
        self,
        sweeper: HoldSweeper,
        interval: float = SWEEP_SECONDS,
        on_expired: Callable[[int], None] | None = None,  # metrics
    ) -> None:
        self._sweeper = sweeper
        self._on_expired = on_expired
        super().__init__(self._sweep, interval, log=log, what="hold sweep")
        self.expired = 0  # holds this worker expired (tests, logs)

    async def sweep_once(self) -> int:
        """One sweep, as the loop runs it: the holds it expired (0 when the
        database is away: that only delays them to the next tick)."""
        before = self.expired
        await self.once()
        return self.expired - before

    async def _sweep(self) -> None:
        expired = await self._sweeper.expire_holds()
        self.expired += expired
        if self._on_expired is not None and expired:
            self._on_expired(expired)
