"""Webhook set-up steps for the API tests: the settings that let the
loopback receiver in and retry fast, a registration that must succeed, and
waiting (with a generous deadline, never a schedule) for an endpoint's
delivery state to reach a condition."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from tests.support.api import Client, create_coupon
from tests.support.receiver import TEST_SECRET, Receiver

FAST = {
    "WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8",  # the loopback receiver
    "WEBHOOK_BACKOFF_BASE": "0.05",
    "WEBHOOK_BACKOFF_MAX": "0.2",
}
Webhook = dict[str, Any]


async def register(client: Client, url: str, **fields: Any) -> Webhook:
    """An endpoint signed with TEST_SECRET (the receiver's), as created."""
    response = await client.post(
        "/api/webhooks", json={"url": url, "secret": TEST_SECRET, **fields}
    )
    assert response.status_code == 201, response.text
    body: Webhook = response.json()
    return body


async def down_endpoint(client: Client, receiver: Receiver, coupon: str, amount: int) -> Webhook:
    """An endpoint whose receiver answers 503 to everything, and a new
    coupon ``coupon`` whose events are then queued for it."""
    receiver.down = True
    hook = await register(client, receiver.url)
    await create_coupon(client, coupon, amount)
    return hook


async def wait_for(
    client: Client, done: Callable[[Webhook], bool], webhook_id: int | None = None
) -> Webhook:
    """The endpoint's state once ``done`` holds: GET /api/webhooks/{id}, or
    the list's first endpoint when no id is given."""
    deadline = time.monotonic() + 30
    while not done(state := await _state(client, webhook_id)):
        assert time.monotonic() < deadline, state
        await asyncio.sleep(0.05)
    return state


async def _state(client: Client, webhook_id: int | None) -> Webhook:
    if webhook_id is not None:
        state: Webhook = (await client.get(f"/api/webhooks/{webhook_id}")).json()
        return state
    first: Webhook = (await client.get("/api/webhooks")).json()["webhooks"][0]
    return first


async def wait_until(done: Callable[[], bool], within: float = 30) -> None:
    deadline = time.monotonic() + within
    while not done():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
