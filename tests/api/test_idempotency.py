"""Idempotency-Key on every state-changing route: the first request runs, a
retry with the same key and request gets the stored answer back byte for
byte (Idempotent-Replayed: true) and changes nothing; another request with
the key is refused (422); a malformed key is a 400."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import asyncpg
import httpx
import pytest

from tests.support.api import Client, claim_coupon, create_coupon, post_claim

if TYPE_CHECKING:
    Connection = asyncpg.Connection[Any]

JSON = {"Content-Type": "application/json"}


def keyed(key: str | bytes) -> dict[str, Any]:
    return {**JSON, "Idempotency-Key": key}


def assert_replay(first: httpx.Response, retry: httpx.Response) -> None:
    assert retry.status_code == first.status_code
    assert retry.content == first.content
    assert retry.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers


async def coupon_row(db: Connection, name: str) -> dict[str, Any]:
    row = await db.fetchrow(
        "SELECT amount, remaining_amount, active FROM coupons WHERE name = $1", name
    )
    assert row is not None
    return dict(row)


async def test_a_created_coupon_is_replayed_and_created_once(
    client: Client, db: Connection
) -> None:
    body = json.dumps({"name": "ONCE", "amount": 5})
    first = await client.post("/api/coupons", content=body, headers=keyed("create-1"))
    assert first.status_code == 201, first.text
    retry = await client.post("/api/coupons", content=body, headers=keyed("create-1"))
    assert_replay(first, retry)
    assert await db.fetchval("SELECT count(*) FROM coupons WHERE name = 'ONCE'") == 1


async def test_a_client_error_is_the_answer_a_retry_gets(client: Client) -> None:
    await create_coupon(client, "TAKEN", 5)
    body = json.dumps({"name": "TAKEN", "amount": 5})
    first = await client.post("/api/coupons", content=body, headers=keyed("dup"))
    assert (first.status_code, first.json()["error"]) == (409, "coupon_exists")
    retry = await client.post("/api/coupons", content=body, headers=keyed("dup"))
    assert_replay(first, retry)


async def test_the_key_with_another_body_is_refused_and_changes_nothing(
    client: Client, db: Connection
) -> None:
    first = await client.post(
        "/api/coupons", content=json.dumps({"name": "A1", "amount": 5}), headers=keyed("k")
    )
    assert first.status_code == 201
    other = await client.post(
        "/api/coupons", content=json.dumps({"name": "A2", "amount": 5}), headers=keyed("k")
    )
    assert (other.status_code, other.json()["error"]) == (422, "idempotency_key_reused")
    assert await db.fetchval("SELECT count(*) FROM coupons WHERE name = 'A2'") == 0


async def test_keys_are_scoped_by_route(client: Client) -> None:
    created = await client.post(
        "/api/coupons", content=json.dumps({"name": "S", "amount": 5}), headers=keyed("same")
    )
    assert created.status_code == 201
    changed = await client.patch(
        "/api/coupons/S", content=json.dumps({"amount": 6}), headers=keyed("same")
    )
    assert changed.status_code == 200, changed.text
    assert "idempotent-replayed" not in changed.headers


@pytest.mark.parametrize(
    "key",
    [b"", b"x" * 256, "caf\u00e9".encode("latin-1"), b"tab\there", b"del\x7f"],
    ids=["empty", "256 characters", "not ASCII", "tab", "DEL"],
)
async def test_a_malformed_key_is_a_400_before_anything_runs(
    client: Client, db: Connection, key: bytes
) -> None:
    body = json.dumps({"name": "BAD", "amount": 5})
    response = await client.post("/api/coupons", content=body, headers=keyed(key))
    assert (response.status_code, response.json()["error"]) == (400, "invalid_request")
    assert await db.fetchval("SELECT count(*) FROM coupons") == 0


async def test_the_longest_key_is_taken(client: Client) -> None:
    body = json.dumps({"name": "LONG", "amount": 5})
    key = "~" * 255
    first = await client.post("/api/coupons", content=body, headers=keyed(key))
    assert first.status_code == 201
    assert_replay(first, await client.post("/api/coupons", content=body, headers=keyed(key)))


async def test_a_replayed_restock_restocks_once(client: Client, db: Connection) -> None:
    await create_coupon(client, "R", 5)
    body = json.dumps({"amount": 8})
    first = await client.patch("/api/coupons/R", content=body, headers=keyed("restock"))
    assert first.status_code == 200, first.text
    await client.patch("/api/coupons/R", content=json.dumps({"active": False}))
    retry = await client.patch("/api/coupons/R", content=body, headers=keyed("restock"))
    assert_replay(first, retry)  # the answer as it was, though the coupon is paused since
    assert await coupon_row(db, "R") == {"amount": 8, "remaining_amount": 8, "active": False}


async def test_the_key_on_another_coupons_path_is_refused(client: Client) -> None:
    await create_coupon(client, "P1", 5)
    await create_coupon(client, "P2", 5)
    body = json.dumps({"amount": 9})
    first = await client.patch("/api/coupons/P1", content=body, headers=keyed("p"))
    assert first.status_code == 200
    other = await client.patch("/api/coupons/P2", content=body, headers=keyed("p"))
    assert (other.status_code, other.json()["error"]) == (422, "idempotency_key_reused")


async def test_a_replayed_release_releases_nothing_more(client: Client, db: Connection) -> None:
    await create_coupon(client, "REL", 5)
    await claim_coupon(client, "alice", "REL")
    first = await client.delete("/api/coupons/REL/claims/alice", headers=keyed("rel"))
    assert (first.status_code, first.content) == (204, b"")
    await claim_coupon(client, "alice", "REL")  # alice claims again
    retry = await client.delete("/api/coupons/REL/claims/alice", headers=keyed("rel"))
    assert_replay(first, retry)
    assert await db.fetchval("SELECT count(*) FROM claims WHERE user_id = 'alice'") == 1
    assert await db.fetchval("SELECT count(*) FROM claim_history") == 1
    assert (await coupon_row(db, "REL"))["remaining_amount"] == 4


async def test_a_replayed_redeem_gives_the_first_answer(client: Client, db: Connection) -> None:
    response = await client.post(
        "/api/coupons", json={"name": "RED", "amount": 5, "hold_seconds": 60}
    )
    assert response.status_code == 201
    await claim_coupon(client, "bob", "RED")
    path = "/api/coupons/RED/claims/bob/redeem"
    first = await client.post(path, headers=keyed("red"))
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "redeemed"
    retry = await client.post(path, headers=keyed("red"))
    assert_replay(first, retry)
    again = await client.post(path)  # without the key: it runs, and is refused
    assert again.json()["error"] == "already_redeemed"


async def test_a_release_refused_is_replayed_as_refused(client: Client) -> None:
    await create_coupon(client, "NOPE", 5)
    first = await client.delete("/api/coupons/NOPE/claims/carol", headers=keyed("nope"))
    assert (first.status_code, first.json()["error"]) == (404, "claim_not_found")
    await claim_coupon(client, "carol", "NOPE")
    retry = await client.delete("/api/coupons/NOPE/claims/carol", headers=keyed("nope"))
    assert_replay(first, retry)
    held = await client.get("/api/coupons/NOPE/claims/carol")
    assert held.status_code == 200  # the replay released nothing


async def test_requests_without_a_key_are_as_before(client: Client) -> None:
    await create_coupon(client, "PLAIN", 1)
    first = await post_claim(client, "dave", "PLAIN")
    assert first.status_code == 200
    assert "idempotent-replayed" not in first.headers
