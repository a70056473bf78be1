"""Webhooks through the API: registration and its rules, the list with its
delivery state, deletion; and deliveries to a loopback receiver that fails,
stalls and checks every signature (the deliverer runs in the app's worker)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from tests.support.api import Client, claim_coupon, create_coupon, in_process_client
from tests.support.network import Network
from tests.support.receiver import TEST_SECRET as SECRET
from tests.support.receiver import Receiver
from tests.support.webhooks import FAST, down_endpoint, register, wait_for


@pytest.fixture
def hooks_settings() -> dict[str, str]:
    return {"WEBHOOK_TIMEOUT": "1"}


async def coupon_events(client: Client, name: str) -> list[dict[str, Any]]:
    response = await client.get(f"/api/coupons/{name}/events", params={"limit": "1000"})
    assert response.status_code == 200, response.text
    events: list[dict[str, Any]] = response.json()["events"]
    return events


async def test_a_webhook_is_registered_listed_and_deleted_and_its_secret_shown_once(
    client: Client, network: Network
) -> None:
    network.resolve("orders.example", ["93.184.215.14"])  # never connected to
    created = await register(client, "https://orders.example/hooks")
    assert created["url"] == "https://orders.example/hooks"
    assert created["events"] == [
        "coupon_created", "coupon_changed", "claimed", "released", "expired", "redeemed",
        "waitlisted", "raffle_drawn",
    ]  # fmt: skip
    assert created["status"] == "enabled"
    assert (created["failures"], created["last_error"], created["pending"]) == (0, None, 0)
    assert created.pop("secret") == SECRET  # the only answer that shows it
    listed = await client.get("/api/webhooks")
    assert listed.status_code == 200
    assert listed.json() == {"webhooks": [created], "next": None}
    assert SECRET not in listed.text
    assert (await client.delete(f"/api/webhooks/{created['id']}")).status_code == 204
    assert (await client.get("/api/webhooks")).json() == {"webhooks": [], "next": None}
    again = await client.delete(f"/api/webhooks/{created['id']}")
    assert again.status_code == 404
    assert again.json()["error"] == "webhook_not_found"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://x.example/h", "secret": SECRET}, "url"),
        ({"url": "https://", "secret": SECRET}, "url"),
        ({"url": "https://x.example/a b", "secret": SECRET}, "url"),
        ({"url": "https://x.example:0/h", "secret": SECRET}, "url"),
        ({"url": "https://x.example/h", "secret": "short"}, "secret"),
        ({"url": "https://x.example/h", "secret": "x" * 257}, "secret"),
        ({"url": "https://x.example/h", "secret": "x" * 44}, "secret"),
        ({"url": "https://x.example/h", "secret": "whsec_" + "A" * 30}, "secret"),  # 22 bytes
        ({"url": "https://x.example/h", "secret": "whsec_" + "A" * 41}, "secret"),  # no base64
        ({"url": "https://x.example/h", "secret": "whsec_" + "A" * 88}, "secret"),  # 66 bytes
        ({"url": "https://x.example/h", "secret": SECRET + "\n"}, "secret"),
        ({"url": "https://x.example/h", "secret": SECRET, "events": []}, "events"),
        ({"url": "https://x.example/h", "secret": SECRET, "events": ["sold"]}, "events"),
        ({"secret": SECRET}, "url"),
    ],
)
async def test_a_registration_that_breaks_a_rule_is_refused(
    client: Client, network: Network, body: dict[str, Any], field: str
) -> None:
    response = await client.post("/api/webhooks", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"
    assert response.json()["message"].startswith(field)
    assert SECRET not in response.text


async def test_webhooks_are_admin_only(database: str) -> None:
    async with in_process_client(database, ADMIN_TOKEN="t0ken-for-admins") as client:
        for method, path in (("POST", "/api/webhooks"), ("GET", "/api/webhooks"),
                             ("DELETE", "/api/webhooks/1")):  # fmt: skip
            response = await client.request(method, path, json={})
            assert response.status_code == 401, (method, path)
            assert response.json()["error"] == "unauthorized"


async def test_every_event_arrives_signed_in_order_through_failures_and_a_timeout(
    hooks_client: Client, receiver: Receiver
) -> None:
    receiver.fail_first, receiver.stall_once = 3, 2.0  # past WEBHOOK_TIMEOUT=1
    await register(hooks_client, receiver.url)
    for coupon in ("HOOK_A", "HOOK_B"):
        await create_coupon(hooks_client, coupon, 10)
        for user in range(5):
            await claim_coupon(hooks_client, f"u{user}", coupon)
    assert (await hooks_client.delete("/api/coupons/HOOK_A/claims/u1")).status_code == 204
    assert (await hooks_client.post("/api/coupons/HOOK_B/claims/u2/redeem")).status_code == 200
    change = await hooks_client.patch("/api/coupons/HOOK_A", json={"amount": 12})
    assert change.status_code == 200
    expected = {c: await coupon_events(hooks_client, c) for c in ("HOOK_A", "HOOK_B")}
    await receiver.wait_for(sum(len(events) for events in expected.values()))

    assert all(arrival.verified for arrival in receiver.arrivals)
    assert [a.status for a in receiver.arrivals[:4]] == [500, 500, 500, 0]
    for coupon, events in expected.items():
        delivered = [a.body for a in receiver.delivered() if a.body["coupon_name"] == coupon]
        assert delivered == events  # each once, in seq order, as the feed shows it
    assert all(a.event_id == str(a.body["id"]) for a in receiver.arrivals)
    # The last arrival is acknowledged in the database after the receiver has
    # it: the endpoint's pending count reaches 0 a moment later.
    listed = await wait_for(hooks_client, lambda hook: hook["pending"] == 0)
    assert (listed["status"], listed["failures"], listed["pending"]) == ("enabled", 0, 0)
    assert listed["last_error"] in ("HTTP 500", "no answer within 1 s")


async def test_an_endpoint_receives_only_the_event_types_it_chose(
    hooks_client: Client, receiver: Receiver
) -> None:
    await register(hooks_client, receiver.url, events=["redeemed"])
    await create_coupon(hooks_client, "ONLY_REDEEMS", 5)
    for user in ("a", "b", "c"):
        await claim_coupon(hooks_client, user, "ONLY_REDEEMS")
    for user in ("c", "a"):
        redeem = await hooks_client.post(f"/api/coupons/ONLY_REDEEMS/claims/{user}/redeem")
        assert redeem.status_code == 200
    await receiver.wait_for(2)
    await asyncio.sleep(1)  # nothing else comes
    assert [(a.body["type"], a.body["user_id"]) for a in receiver.arrivals] == [
        ("redeemed", "c"), ("redeemed", "a")
    ]  # fmt: skip


async def test_an_endpoint_that_keeps_failing_is_disabled_with_its_last_error(
    database: str, receiver: Receiver
) -> None:
    settings = {**FAST, "WEBHOOK_TIMEOUT": "1", "WEBHOOK_MAX_ATTEMPTS": "3"}
    async with in_process_client(database, **settings) as client:
        hook = await down_endpoint(client, receiver, "DOWNSTREAM_DOWN", 5)
        listed = await wait_for(client, lambda h: h["status"] != "enabled")
        assert listed["id"] == hook["id"]
        assert (listed["failures"], listed["last_error"], listed["pending"]) == (3, "HTTP 503", 1)
        assert "3 failed attempts in a row" in listed["disabled_reason"]
        attempts = len(receiver.arrivals)
        await claim_coupon(client, "later", "DOWNSTREAM_DOWN")
        await asyncio.sleep(1.5)
        assert len(receiver.arrivals) == attempts == 3  # a disabled endpoint hears nothing


async def test_no_transaction_is_open_while_a_post_is_in_flight(
    hooks_client: Client, receiver: Receiver, db: asyncpg.Connection[Any]
) -> None:
    """An open transaction would hold back every snapshot's xmin: the events
    feed's horizon and vacuum. The deliverer leases, POSTs, then records."""
    receiver.stall_once = 1.5  # past WEBHOOK_TIMEOUT=1
    await register(hooks_client, receiver.url)
    await create_coupon(hooks_client, "STALLED", 5)
    await receiver.wait_for_requests(1)
    assert receiver.arrivals[0].status == 0  # stalled now, for a second
    for _ in range(5):
        held = await db.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND state LIKE 'idle in transaction%'"
        )
        assert held == 0
        await asyncio.sleep(0.1)
    await receiver.wait_for(1)
