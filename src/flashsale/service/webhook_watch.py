"""Each endpoint's backlog and lag, sampled every few seconds for the
metrics, and the backlog limit: an endpoint more than ``backlog_max`` events
behind is disabled with a reason that names the events feed, the way to
consume events at volume (one POST per event cannot follow a hot coupon).
Every worker and delivery process runs one; disabling is idempotent."""

from __future__ import annotations

import logging
from collections.abc import Callable

from flashsale.service.periodic import Periodic
from flashsale.service.webhook_ports import DeliveryQueue

WATCH_SECONDS = 5.0

log = logging.getLogger("flashsale.webhooks")


class WebhookWatch(Periodic):
    def __init__(
        self,
        queue: DeliveryQueue,
        *,
        backlog_max: int,
        on_sample: Callable[[dict[int, tuple[int, float]]], None],
        interval: float = WATCH_SECONDS,
    ) -> None:
        self._queue = queue
        self._backlog_max = backlog_max
        self._on_sample = on_sample
        super().__init__(self._sample_and_limit, interval, log=log, what="webhook watch")

    async def _sample_and_limit(self) -> None:
        backlogs = await self._queue.backlogs()
        self._on_sample({b.webhook_id: (b.events, b.lag_seconds) for b in backlogs})
        for backlog in backlogs:
            if backlog.events > self._backlog_max:
                reason = (
                    f"backlog of {backlog.events} events passed WEBHOOK_BACKLOG_MAX "
                    f"({self._backlog_max}): read GET /api/events instead"
                )
                await self._queue.disable(backlog.webhook_id, reason)
                log.warning("webhook %d disabled: %s", backlog.webhook_id, reason)
