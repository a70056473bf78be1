"""Webhook delivery: one task per worker, started and stopped by wiring
like the hold sweeper, that never holds a transaction open during a POST.

Each tick pumps the events feed into streams (one per endpoint and coupon,
migration 0010) and leases as many due streams as it has free slots; each
leased stream is delivered by a task of its own, one event after the other
(a coupon's seq n+1 never goes before n is delivered), and its result is
recorded under the lease. Several workers and instances split the streams
(SKIP LOCKED); a crashed deliverer's lease runs out and the event is sent
again: at least once, twice only after a crash mid-delivery."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass

from flashsale.domain import ServiceUnavailable
from flashsale.service.ports import Event
from flashsale.service.signing import signed_headers
from flashsale.service.webhook_ports import Delivery, DeliveryQueue, PostOutcome, WebhookSender
from flashsale.service.webhooks import RetryPolicy

TICK_SECONDS = 0.5
FEED_PAGE = 1000
MAX_PAGES_PER_TICK = 20

log = logging.getLogger("flashsale.webhooks")

_BATCH_HEAD = b'{"type":"batch","events":['
_BATCH_TAIL = b"]}"


@dataclass(frozen=True, slots=True)
class Batching:
    """Several events per delivery: at most ``max_events`` of one coupon's,
    in seq order, in a body of at most ``max_bytes`` (a single event larger
    than that still goes, alone: it cannot be split)."""

    max_events: int
    max_bytes: int

    def fill(
        self, events: list[Event], encode: Callable[[Event], bytes]
    ) -> tuple[list[Event], list[bytes]]:
        """The longest prefix of ``events`` within the bounds (at least one)."""
        taken: list[Event] = []
        bodies: list[bytes] = []
        size = len(_BATCH_HEAD) + len(_BATCH_TAIL)
        for event in events[: self.max_events]:
            body = encode(event)
            size += len(body) + (1 if bodies else 0)  # the comma between two
            if bodies and size > self.max_bytes:
                break
            taken.append(event)
            bodies.append(body)
        return taken, bodies


def batch_body(bodies: list[bytes]) -> bytes:
    """``{"type":"batch","events":[...]}``, each event as the feed shows it."""
    return _BATCH_HEAD + b",".join(bodies) + _BATCH_TAIL


class WebhookDeliverer:
    def __init__(
        self,
        queue: DeliveryQueue,
        sender: WebhookSender,
        policy: RetryPolicy,
        encode: Callable[[Event], bytes],
        *,
        timeout: float = 10.0,
        concurrency: int = 16,
        interval: float = TICK_SECONDS,
        clock: Callable[[], float] = time.time,
        busy: Callable[[], bool] = lambda: False,
        busy_pause: float = 0.0,
        batch: Batching | None = None,
    ) -> None:
        self._queue = queue
        self._sender = sender
        self._policy = policy
        self._encode = encode  # the event's JSON exactly as the feed shows it
        self._concurrency = concurrency
        self._interval = interval
        self._clock = clock
        self._busy = busy  # claims in flight in this process: deliveries yield to them
        # The feed grew by a full page since the last tick: claims are being
        # made somewhere (a delivery process sees none of its own), so
        # deliveries yield as they do to this process's claims.
        self._feed_busy = False
        self._busy_pause = busy_pause  # seconds between a stream's events meanwhile
        self._batch = batch  # None: one event per POST, its body the event itself
        # A lease outlasts the POST (bounded by the timeout) and its recording.
        self.lease_seconds = 2 * timeout + 5
        self._most_pause = timeout
        self._streams: dict[asyncio.Task[None], Delivery] = {}
        self._task: asyncio.Task[None] | None = None
        self.delivered = 0  # events this worker delivered (tests, logs)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        """Stops leasing, cuts POSTs in flight short and lets their leases go,
        so another worker or the next start sends them at once."""
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        held = list(self._streams.values())
        for stream in list(self._streams):
            stream.cancel()
        await asyncio.gather(*self._streams, return_exceptions=True)
        with suppress(ServiceUnavailable):
            await self._queue.release(held)
        await self._sender.close()

    async def _run(self) -> None:
        while True:
            await self.tick()
            if self._streams:
                await asyncio.wait(
                    list(self._streams),
                    timeout=self._interval,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            else:
                await asyncio.sleep(self._interval)

    async def tick(self) -> int:
        """Pumps the feed and starts a task per newly leased stream; a
        database that is away only delays this to the next tick."""
        try:
            # Every tick, slots free or not: the pump also tells whether the
            # feed still grows by full pages (whether to go on yielding).
            await self._pump()
            free = self._slots() - len(self._streams)
            if free <= 0:
                return 0
            leased = await self._queue.lease(limit=free, lease_seconds=self.lease_seconds)
        except ServiceUnavailable:
            return 0
        except Exception as error:  # a bug must not stop deliveries for good
            log.error("webhook tick failed: %s", type(error).__name__)
            return 0
        for delivery in leased:
            task = asyncio.get_running_loop().create_task(self._stream(delivery))
            self._streams[task] = delivery
            task.add_done_callback(self._streams.pop)
        return len(leased)

    def _slots(self) -> int:
        # While claims are in flight, a quarter of the slots: deliveries go on
        # (at least one stream) without taking the claims' loop and pool.
        return max(1, self._concurrency // 4) if self._yielding() else self._concurrency

    async def _pump(self) -> None:
        # Each endpoint reads the whole feed: while claims are in flight, one
        # page a tick. A stream's next event is read by seq whatever the pump
        # has seen: this delays the backlog's count and an idle stream's restart only.
        for page in range(1 if self._busy() else MAX_PAGES_PER_TICK):
            full = await self._queue.queue_events(page=FEED_PAGE) >= FEED_PAGE
            if page == 0:
                self._feed_busy = full
            if not full:
                return

    def _yielding(self) -> bool:
        return self._feed_busy or self._busy()

    async def _stream(self, first: Delivery) -> None:
        """One stream's events, in order, while it holds the lease."""
        delivery: Delivery | None = first
        task = asyncio.current_task()
        try:
            while delivery is not None:
                if task is not None:
                    self._streams[task] = delivery
                delivery, sent = await self.deliver(delivery)
                if delivery is not None and self._busy_pause and self._yielding():
                    # The claims' turn: a pause per event sent, so a batch
                    # yields as much as its events would have one by one; at
                    # most the POST timeout, so pause, POST and record fit in
                    # the lease (2 * timeout + 5).
                    await asyncio.sleep(min(self._busy_pause * sent, self._most_pause))
        except ServiceUnavailable:
            pass  # the lease runs out; the event is retried then
        except Exception as error:
            log.error("webhook delivery failed: %s", type(error).__name__)

    async def deliver(self, delivery: Delivery) -> tuple[Delivery | None, int]:
        """One POST and its record: the stream's next delivery, if it goes
        on, and how many events were delivered."""
        if delivery.event is None:
            await self._queue.caught_up(delivery)
            return None, 0
        message_id, body, events = await self._message(delivery, delivery.event)
        headers = signed_headers(delivery.secrets, message_id, int(self._clock()), body)
        outcome = await self._sender.post(delivery.url, body, headers)
        if outcome.delivered:
            self.delivered += len(events)
            following = await self._queue.delivered(
                delivery, through=events[-1], renew_seconds=self.lease_seconds
            )
            return following, len(events)
        await self._failed(delivery, outcome)
        return None, 0

    async def _message(self, delivery: Delivery, first: Event) -> tuple[str, bytes, list[int]]:
        """The message's id, its body and the seqs it carries. One event: its
        id is the message id, the same on every retry and replay. A batch:
        the stream's next events in seq order, bounded in count and bytes,
        each with its own id inside (docs/webhooks.md, "Batches")."""
        if self._batch is None:
            return str(first.event_id), self._encode(first), [first.seq]
        more = await self._queue.following(
            delivery, after=first.seq, limit=self._batch.max_events - 1
        )
        events, bodies = self._batch.fill([first, *more], self._encode)
        message_id = f"batch_{events[0].event_id}_{events[-1].event_id}"
        return message_id, batch_body(bodies), [event.seq for event in events]

    async def _failed(self, delivery: Delivery, outcome: PostOutcome) -> None:
        error = outcome.error or "failed"
        # A receiver's Retry-After (capped by the sender) is a floor, never a hurry.
        retry_in = max(self._policy.delay(delivery.attempts + 1), outcome.retry_after or 0.0)
        failure = await self._queue.failed(delivery, error=error, retry_in=retry_in)
        # The id, never the URL (it may carry credentials) nor the secret.
        log.info(
            "webhook %d: event %s failed (%s), attempt %d, next in %.1f s",
            delivery.webhook_id,
            delivery.event.event_id if delivery.event else "-",
            error,
            delivery.attempts + 1,
            retry_in,
        )
        if failure is not None and outcome.gone:
            await self._queue.disable(delivery.webhook_id, "the endpoint answered 410 Gone")
            log.warning("webhook %d disabled: it answered 410 Gone", delivery.webhook_id)
        elif failure is not None and self._policy.gives_up(failure):
            reason = self._policy.reason(failure)
            await self._queue.disable(delivery.webhook_id, f"{reason}; last: {error}")
            log.warning("webhook %d disabled: %s", delivery.webhook_id, reason)
