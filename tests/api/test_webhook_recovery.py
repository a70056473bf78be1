"""Recovering an endpoint: enabled again after it was disabled, it gets every
event it missed, in order; a replay sends an endpoint's events again from an
event id or a time, never from before it was registered; the list is paged
and each endpoint's delivery state is readable on its own."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support.api import Client, claim_coupon, create_coupon
from tests.support.receiver import Receiver
from tests.support.webhooks import down_endpoint, register, wait_for, wait_until


@pytest.fixture
def hooks_settings() -> dict[str, str]:
    return {"WEBHOOK_MAX_ATTEMPTS": "2"}


async def test_a_disabled_endpoint_enabled_and_replayed_gets_every_event_in_order(
    hooks_client: Client, receiver: Receiver
) -> None:
    hook = await down_endpoint(hooks_client, receiver, "MISSED", 50)
    await wait_for(hooks_client, lambda h: h["status"] == "disabled", hook["id"])
    for user in range(5):  # missed while disabled
        await claim_coupon(hooks_client, f"u{user}", "MISSED")
    await create_coupon(hooks_client, "MISSED_TOO", 5)
    await claim_coupon(hooks_client, "late", "MISSED_TOO")
    receiver.down = False
    enabled = await hooks_client.post(f"/api/webhooks/{hook['id']}/enable")
    assert enabled.status_code == 200, enabled.text
    assert (enabled.json()["status"], enabled.json()["disabled_reason"]) == ("enabled", None)
    expected = {name: await feed_seqs(hooks_client, name) for name in ("MISSED", "MISSED_TOO")}
    await receiver.wait_for(sum(len(seqs) for seqs in expected.values()))
    assert receiver.seqs_by_coupon() == expected  # every event, each coupon's in seq order
    assert all(arrival.verified for arrival in receiver.arrivals)
    await wait_for(hooks_client, caught_up, hook["id"])  # the last answer recorded too

    first_id = min(a.body["id"] for a in receiver.delivered())
    replay = await hooks_client.post(
        f"/api/webhooks/{hook['id']}/replay", json={"from_event_id": first_id}
    )
    assert replay.status_code == 200, replay.text
    assert replay.json()["streams"] == 2
    delivered_before = len(receiver.delivered())
    await wait_until(lambda: len(receiver.delivered()) == 2 * delivered_before)
    again = receiver.delivered()[delivered_before:]
    for name, seqs in expected.items():
        assert [a.body["seq"] for a in again if a.body["coupon_name"] == name] == seqs


async def test_a_replay_never_reaches_before_the_endpoint_was_registered(
    hooks_client: Client, receiver: Receiver
) -> None:
    await create_coupon(hooks_client, "OLDER", 5)
    await claim_coupon(hooks_client, "early", "OLDER")
    hook = await register(hooks_client, receiver.url)
    await claim_coupon(hooks_client, "later", "OLDER")
    await receiver.wait_for(1)
    await wait_for(hooks_client, caught_up, hook["id"])
    long_ago = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    replay = await hooks_client.post(
        f"/api/webhooks/{hook['id']}/replay", json={"from_time": long_ago}
    )
    assert replay.status_code == 200, replay.text
    assert replay.json()["since"] == hook["created_at"]
    assert replay.json()["streams"] == 1
    await wait_until(lambda: len(receiver.delivered()) == 2)
    await asyncio.sleep(0.5)  # nothing older comes
    assert [(a.body["type"], a.body["user_id"]) for a in receiver.delivered()] == [
        ("claimed", "later"), ("claimed", "later")
    ]  # fmt: skip


async def test_an_endpoints_delivery_state_is_readable_on_its_own(
    hooks_client: Client, receiver: Receiver
) -> None:
    hook = await down_endpoint(hooks_client, receiver, "STATE", 5)
    state = await wait_for(hooks_client, lambda h: h["failures"] >= 1, hook["id"])
    assert state["last_error"] == "HTTP 503"
    assert (state["pending"], state["backlog"]) == (1, 1)
    assert state["next_attempt_at"] is not None
    assert state["lag_seconds"] >= 0
    for missing in ("999", "0", "x"):
        response = await hooks_client.get(f"/api/webhooks/{missing}")
        assert response.status_code == 404
        assert response.json()["error"] == "webhook_not_found"
    for action in ("enable", "replay"):
        response = await hooks_client.post(f"/api/webhooks/999/{action}", json={})
        assert response.status_code == 404


async def test_the_webhook_list_is_paged(hooks_client: Client, receiver: Receiver) -> None:
    ids = [(await register(hooks_client, receiver.url))["id"] for _ in range(3)]
    first = (await hooks_client.get("/api/webhooks", params={"limit": "2"})).json()
    assert [w["id"] for w in first["webhooks"]] == ids[:2]
    second = await hooks_client.get("/api/webhooks", params={"limit": "2", "after": first["next"]})
    assert [w["id"] for w in second.json()["webhooks"]] == ids[2:]
    assert second.json()["next"] is None
    for params in ({"limit": "0"}, {"limit": "1001"}, {"after": "%%%"}):
        response = await hooks_client.get("/api/webhooks", params=params)
        assert response.status_code == 400, params
        assert response.json()["error"] == "invalid_request"


async def test_a_replay_refuses_a_start_that_is_no_event_id_or_time(
    hooks_client: Client, receiver: Receiver
) -> None:
    hook = await register(hooks_client, receiver.url)
    for body, field in (({"from_event_id": 0}, "from_event_id"),
                        ({"from_time": "2026-12-24T10:00:00"}, "from_time"),
                        ({"from_event_id": True}, "from_event_id")):  # fmt: skip
        response = await hooks_client.post(f"/api/webhooks/{hook['id']}/replay", json=body)
        assert response.status_code == 400, body
        assert response.json()["message"].startswith(field)


async def feed_seqs(client: Client, name: str) -> list[int]:
    response = await client.get(f"/api/coupons/{name}/events", params={"limit": "1000"})
    return [event["seq"] for event in response.json()["events"]]


def caught_up(webhook: dict[str, Any]) -> bool:
    """Every delivery answered and recorded: nothing pending."""
    return webhook["last_delivered_at"] is not None and webhook["pending"] == 0
