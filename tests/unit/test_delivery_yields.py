"""Deliveries yield to claims: while claims are in flight in the process,
or the events feed grows by a full page a tick (claims made elsewhere: a
delivery process of its own), the deliverer leases a quarter of its slots
(at least one stream)."""

from __future__ import annotations

from typing import Any

from flashsale.service.delivery import FEED_PAGE, WebhookDeliverer
from flashsale.service.webhook_ports import Delivery, PostOutcome
from flashsale.service.webhooks import RetryPolicy


class LeaseCounter:
    """A DeliveryQueue with no work that remembers each lease's limit."""

    def __init__(self) -> None:
        self.limits: list[int] = []
        self.new_events = 0  # on the feed at each tick

    async def queue_events(self, *, page: int) -> int:
        return min(page, self.new_events)

    async def lease(self, *, limit: int, lease_seconds: float) -> list[Delivery]:
        self.limits.append(limit)
        return []

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"{name} not expected")


class NoSender:
    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> PostOutcome:
        raise AssertionError("nothing to post")

    async def close(self) -> None:
        pass


async def test_a_busy_process_leases_a_quarter_of_its_slots() -> None:
    busy = [False]
    queue = LeaseCounter()
    deliverer = WebhookDeliverer(
        queue, NoSender(), RetryPolicy(), lambda _: b"{}", concurrency=16, busy=lambda: busy[0]
    )
    await deliverer.tick()
    busy[0] = True
    await deliverer.tick()
    one = WebhookDeliverer(
        queue, NoSender(), RetryPolicy(), lambda _: b"{}", concurrency=2, busy=lambda: True
    )
    await one.tick()
    assert queue.limits == [16, 4, 1]


async def test_a_feed_growing_by_full_pages_makes_a_delivery_process_yield() -> None:
    queue = LeaseCounter()
    deliverer = WebhookDeliverer(queue, NoSender(), RetryPolicy(), lambda _: b"{}", concurrency=16)
    await deliverer.tick()
    queue.new_events = FEED_PAGE * 3  # claims made by the serve workers
    await deliverer.tick()  # its pump sees a full page: a quarter
    queue.new_events = 10  # they calmed down
    await deliverer.tick()
    assert queue.limits == [16, 4, 16]
