"""Who did it (issue 24): every admin change's event names the credential
that made it (``data.actor``: the caller's kind and the token's name, never
the token); claims, which no credential makes, name none."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest

from tests.support.api import Client, in_process_client
from tests.support.events import feed_over_http
from tests.support.holds import expire_holds

if TYPE_CHECKING:
    Connection = asyncpg.Connection[Any]

TOKEN = "actor-token-0123456789"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
OPERATOR = {"kind": "operator", "name": "ops-desk"}
# Without ADMIN_TOKEN, on loopback: the open admin routes' operator (docs/access.md).
OPEN_OPERATOR = {"kind": "operator", "name": "admin-open"}


@pytest.fixture
async def guarded(database: str) -> AsyncIterator[Client]:
    async with in_process_client(database, ADMIN_TOKEN=f"ops-desk:{TOKEN}") as client:
        yield client


async def feed(client: Client, count: int) -> list[dict[str, Any]]:
    """The feed once it shows ``count`` events (tests/support/events.py)."""
    return await feed_over_http(client, ADMIN, count)


async def test_the_feed_names_who_made_each_admin_change(guarded: Client) -> None:
    created = await guarded.post(
        "/api/coupons", json={"name": "A", "amount": 5, "hold_seconds": 60}, headers=ADMIN
    )
    assert created.status_code == 201
    claimed = await guarded.post("/api/coupons/claim", json={"user_id": "u", "coupon_name": "A"})
    assert claimed.status_code == 200
    changed = await guarded.patch("/api/coupons/A", json={"amount": 9}, headers=ADMIN)
    assert changed.status_code == 200
    redeemed = await guarded.post("/api/coupons/A/claims/u/redeem", headers=ADMIN)
    assert redeemed.status_code == 200, redeemed.text
    events = await feed(guarded, 4)
    actors = {event["type"]: event["data"].get("actor") for event in events}
    assert actors == {
        "coupon_created": OPERATOR,
        "claimed": None,
        "coupon_changed": OPERATOR,
        "redeemed": OPERATOR,
    }
    assert TOKEN not in json.dumps(events)


async def test_a_keyed_change_names_its_actor_once(guarded: Client, db: Connection) -> None:
    keyed = {**ADMIN, "Idempotency-Key": "patch-1"}
    await guarded.post("/api/coupons", json={"name": "K", "amount": 5}, headers=keyed)
    for _ in range(2):
        response = await guarded.patch("/api/coupons/K", json={"active": False}, headers=keyed)
        assert response.status_code == 200
    events = await feed(guarded, 2)
    assert [(e["type"], e["data"]["actor"]) for e in events] == [
        ("coupon_created", OPERATOR),
        ("coupon_changed", OPERATOR),
    ]
    # The setting is the transaction's: the pool's next use of the
    # connection, a claim here, names nobody.
    await guarded.post("/api/coupons", json={"name": "L", "amount": 5}, headers=ADMIN)
    await guarded.post("/api/coupons/claim", json={"user_id": "v", "coupon_name": "L"})
    claims = await db.fetch("SELECT data FROM events WHERE type = 'claimed'")
    assert [json.loads(row["data"]) for row in claims] == [{}]


async def test_an_endpoint_shows_who_registered_and_last_changed_it(hooks_client: Client) -> None:
    registered = await hooks_client.post("/api/webhooks", json={"url": "http://127.0.0.1:9/h"})
    assert registered.status_code == 201, registered.text
    body = registered.json()
    assert body["created_by"] == body["changed_by"] == OPEN_OPERATOR
    hook = body["id"]
    steps: list[tuple[str, str, dict[str, Any] | None]] = [
        ("POST", f"/api/webhooks/{hook}/secret", {}),
        ("POST", f"/api/webhooks/{hook}/enable", None),
        ("POST", f"/api/webhooks/{hook}/replay", {}),
    ]
    for method, path, payload in steps:
        before = (await hooks_client.get(f"/api/webhooks/{hook}")).json()["changed_at"]
        response = await hooks_client.request(method, path, json=payload)
        assert response.status_code == 200, response.text
        after = (await hooks_client.get(f"/api/webhooks/{hook}")).json()
        assert after["changed_by"] == OPEN_OPERATOR
        assert after["changed_at"] >= before


BACKEND_TOKEN = "backend-token-0123456789"
BACKEND = {"Authorization": f"Bearer {BACKEND_TOKEN}"}
SHOP = {"kind": "backend", "name": "shop"}


@pytest.mark.parametrize("strategy", ["batched", "transaction"])
async def test_each_release_names_its_caller_and_an_expiry_nobody(
    database: str, db: Connection, strategy: str
) -> None:
    environment = {
        "ADMIN_TOKEN": f"ops-desk:{TOKEN}",
        "BACKEND_TOKEN": f"shop:{BACKEND_TOKEN}",
        "CLAIM_STRATEGY": strategy,
    }
    async with in_process_client(database, **environment) as client:
        created = await client.post("/api/coupons", json={"name": "R", "amount": 9}, headers=ADMIN)
        assert created.status_code == 201
        for user in ("op", "shop", "keyed", "late"):
            claimed = await client.post(
                "/api/coupons/claim", json={"user_id": user, "coupon_name": "R"}, headers=BACKEND
            )
            assert claimed.status_code == 200, claimed.text
        assert (await client.delete("/api/coupons/R/claims/op", headers=ADMIN)).status_code == 204
        assert (
            await client.delete("/api/coupons/R/claims/shop", headers=BACKEND)
        ).status_code == 204
        keyed = {**BACKEND, "Idempotency-Key": "release-1"}
        for _ in range(2):  # the replay releases nothing: one event
            response = await client.delete("/api/coupons/R/claims/keyed", headers=keyed)
            assert response.status_code == 204
        await expire_holds(db, "R", ["late"])
        assert await db.fetchval("SELECT expire_holds(10)") == 1
        events = await feed(client, 9)
    ended = [(e["type"], e["user_id"], e["data"]) for e in events if e["type"] != "claimed"][1:]
    assert ended == [
        ("released", "op", {"reason": "released", "actor": OPERATOR}),
        ("released", "shop", {"reason": "released", "actor": SHOP}),
        ("released", "keyed", {"reason": "released", "actor": SHOP}),
        ("expired", "late", {}),
    ]
    assert BACKEND_TOKEN not in json.dumps(events)
