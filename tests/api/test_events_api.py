"""The events feed over HTTP (the app in process): the event's JSON, pages
and their cursors, and what a bad request answers."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.support.api import Client, claim_coupon, create_coupon, in_process_client
from tests.support.events import feed_over_http

TOKEN = "events-admin-token-0123456789"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def guarded(database: str) -> AsyncIterator[Client]:
    async with in_process_client(database, ADMIN_TOKEN=TOKEN) as client:
        yield client


async def admin_page(client: Client, **params: Any) -> dict[str, Any]:
    response = await client.get("/api/events", params=params, headers=ADMIN)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def wait_for_feed(client: Client, count: int) -> None:
    """Until the feed shows ``count`` events (tests/support/events.py)."""
    await feed_over_http(client, ADMIN, count)


async def test_a_page_of_the_feed_holds_each_event_and_a_cursor_to_go_on(
    guarded: Client,
) -> None:
    response = await guarded.post("/api/coupons", json={"name": "F", "amount": 3}, headers=ADMIN)
    assert response.status_code == 201
    await claim_coupon(guarded, "alice", "F")
    await claim_coupon(guarded, "bob", "F")
    await wait_for_feed(guarded, 3)
    first = await admin_page(guarded, limit="2")
    assert [e["type"] for e in first["events"]] == ["coupon_created", "claimed"]
    created, claimed = first["events"]
    assert set(claimed) == {"id", "coupon_name", "seq", "type", "user_id", "at", "data"}
    assert (created["seq"], created["user_id"], created["data"]["amount"]) == (1, None, 3)
    assert (claimed["coupon_name"], claimed["seq"], claimed["user_id"]) == ("F", 2, "alice")
    assert claimed["at"].endswith("Z")
    second = await admin_page(guarded, after=first["next"])
    assert [(e["seq"], e["user_id"]) for e in second["events"]] == [(3, "bob")]
    caught_up = await admin_page(guarded, after=second["next"])
    assert caught_up == {"events": [], "next": second["next"]}  # ask again later


async def test_one_coupons_events_come_by_seq_for_anyone(client: Client) -> None:
    await create_coupon(client, "P", 5)
    for user in ("a", "b", "c"):
        await claim_coupon(client, user, "P")
    response = await client.get("/api/coupons/P/events", params={"limit": "3"})
    assert response.status_code == 200
    page = response.json()
    assert [e["seq"] for e in page["events"]] == [1, 2, 3]
    rest = (await client.get("/api/coupons/P/events", params={"after": page["next"]})).json()
    assert [(e["seq"], e["user_id"]) for e in rest["events"]] == [(4, "c")]


async def test_a_coupon_that_does_not_exist_has_no_events(client: Client) -> None:
    for name in ("NOPE", "bad%20name"):
        response = await client.get(f"/api/coupons/{name}/events")
        assert response.status_code == 404
        assert response.json()["error"] == "coupon_not_found"


def cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "after",
    ["", "not base64!", cursor("12"), cursor("1.x"), cursor("-1.2"), cursor(f"{2**64}.1")],
)
async def test_a_cursor_the_feed_did_not_give_is_a_bad_request(guarded: Client, after: str) -> None:
    for path in ("/api/events", "/api/events/stream"):
        response = await guarded.get(path, params={"after": after}, headers=ADMIN)
        assert response.status_code == 400, path
        assert response.json()["error"] == "invalid_request"
    response = await guarded.get(
        "/api/events/stream", headers={**ADMIN, "Last-Event-ID": after or "x"}
    )
    assert response.status_code == 400


async def test_the_feed_and_its_stream_need_the_admin_token(guarded: Client) -> None:
    for path in ("/api/events", "/api/events/stream"):
        response = await guarded.get(path)
        assert response.status_code == 401
        assert response.json()["error"] == "unauthorized"
    await create_coupon_as_admin(guarded)
    # Issue 24: a coupon's events rebuild the feed, so they need a token too.
    assert (await guarded.get("/api/coupons/OPEN/events")).status_code == 401
    assert (await guarded.get("/api/coupons/OPEN/events", headers=ADMIN)).status_code == 200


async def create_coupon_as_admin(client: Client) -> None:
    response = await client.post("/api/coupons", json={"name": "OPEN", "amount": 1}, headers=ADMIN)
    assert response.status_code == 201
