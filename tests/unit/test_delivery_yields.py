"""Deliveries yield to claims: while claims are in flight in the process,
the deliverer leases a quarter of its slots (at least one stream)."""

from __future__ import annotations

from typing import Any

from flashsale.service.delivery import WebhookDeliverer
from flashsale.service.ports import Delivery, PostOutcome
from flashsale.service.webhooks import RetryPolicy


class LeaseCounter:
    """A DeliveryQueue with no work that remembers each lease's limit."""

    def __init__(self) -> None:
        self.limits: list[int] = []

    async def queue_events(self, *, page: int) -> int:
        return 0

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
