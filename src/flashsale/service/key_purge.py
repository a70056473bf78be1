"""Idempotency keys purged once they are IDEMPOTENCY_TTL old: one task per
worker, like the hold sweeper (service/expiry.py).

Each pass deletes the oldest expired keys a small batch at a time (one short
transaction per batch, by idempotency_keys_created_idx) until fewer than a
batch are left, then sleeps. The claim path never waits for it: the DELETE
takes its rows FOR UPDATE SKIP LOCKED and touches only keys a day old, and
no claim batch locks key rows other than its own fresh ones; concurrent
purges of other workers skip each other's rows."""

from __future__ import annotations

import asyncio
import logging

from flashsale.service.periodic import Periodic
from flashsale.service.ports import KeyPurger

PURGE_SECONDS = 60.0
PURGE_BATCH = 1_000

log = logging.getLogger("flashsale.idempotency")


class KeyPurge(Periodic):
    def __init__(
        self,
        purger: KeyPurger,
        ttl: int,
        interval: float = PURGE_SECONDS,
        batch: int = PURGE_BATCH,
    ) -> None:
        self._purger = purger
        self._ttl = ttl
        self._batch = batch
        super().__init__(self.purge_once, interval, log=log, what="idempotency key purge")

    async def purge_once(self) -> int:
        """Every key past its TTL, in batches: how many went. Raises what the
        store raises (the loop's round tolerates it: Periodic.once)."""
        total = 0
        while True:
            purged = await self._purger.purge_idempotency_keys(
                older_than=self._ttl, limit=self._batch
            )
            total += purged
            if purged < self._batch:
                return total
            await asyncio.sleep(0)  # let requests run between batches
