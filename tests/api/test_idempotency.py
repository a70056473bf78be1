"""Idempotency-Key on every state-changing route: the first request runs, a
retry with the same key and request gets the stored answer back byte for
byte (Idempotent-Replayed: true) and changes nothing; another request with
the key is refused (422); a malformed key is a 400."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import asyncpg
import httpx
import pytest

from tests.support.api import (
    Client,
    claim_coupon,
    create_coupon,
    in_process_client,
    post_claim,
    post_keyed_claim,
)

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
    assert "idempotent-replayed" not in other.headers
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


# The claim: its key is kept by claim_many in the batch that decides it.


def claim_body(user: str, coupon: str) -> str:
    return json.dumps({"user_id": user, "coupon_name": coupon})


async def test_a_retried_claim_replays_its_200_and_claims_once(
    client: Client, db: Connection
) -> None:
    response = await client.post(
        "/api/coupons", json={"name": "C", "amount": 5, "hold_seconds": 60}
    )
    assert response.status_code == 201
    first = await post_keyed_claim(client, "claim-1", "alice", "C")
    assert first.status_code == 200, first.text
    retry = await post_keyed_claim(client, "claim-1", "alice", "C")
    assert_replay(first, retry)
    assert await db.fetchval("SELECT count(*) FROM claims WHERE user_id = 'alice'") == 1
    assert (await coupon_row(db, "C"))["remaining_amount"] == 4
    plain = await post_claim(client, "alice", "C")  # without the key: the truth now
    assert plain.json()["error"] == "already_claimed"


async def test_a_claim_key_with_another_body_is_refused(client: Client, db: Connection) -> None:
    await create_coupon(client, "C2", 5)
    await create_coupon(client, "C3", 5)
    assert (await post_keyed_claim(client, "k2", "alice", "C2")).status_code == 200
    other = await post_keyed_claim(client, "k2", "alice", "C3")  # alice's key, another body
    assert (other.status_code, other.json()["error"]) == (422, "idempotency_key_reused")
    assert "idempotent-replayed" not in other.headers
    assert await db.fetchval("SELECT count(*) FROM claims WHERE coupon_name = 'C3'") == 0
    # Issue 24: an anonymous claim's key is its user's, so bob's "k2" is his own.
    bobs = await post_keyed_claim(client, "k2", "bob", "C2")
    assert bobs.status_code == 200
    assert "idempotent-replayed" not in bobs.headers


async def test_a_refused_claim_is_replayed_refused_after_stock_comes_back(
    client: Client, db: Connection
) -> None:
    await create_coupon(client, "ONE", 1)
    await claim_coupon(client, "alice", "ONE")
    first = await post_keyed_claim(client, "bob-1", "bob", "ONE")
    assert (first.status_code, first.json()["error"]) == (409, "sold_out")
    released = await client.delete("/api/coupons/ONE/claims/alice")
    assert released.status_code == 204
    retry = await post_keyed_claim(client, "bob-1", "bob", "ONE")
    assert_replay(first, retry)
    assert await db.fetchval("SELECT count(*) FROM claims WHERE user_id = 'bob'") == 0
    fresh = await post_keyed_claim(client, "bob-2", "bob", "ONE")  # a new key runs now
    assert fresh.status_code == 200


async def test_a_claim_on_no_coupon_is_replayed_as_404(client: Client) -> None:
    first = await post_keyed_claim(client, "ghost", "alice", "GHOST")
    assert (first.status_code, first.json()["error"]) == (404, "coupon_not_found")
    await create_coupon(client, "GHOST", 5)
    assert_replay(first, await post_keyed_claim(client, "ghost", "alice", "GHOST"))


async def test_a_malformed_claim_key_is_a_400(client: Client, db: Connection) -> None:
    await create_coupon(client, "C3", 5)
    response = await client.post(
        "/api/coupons/claim", content=claim_body("alice", "C3"), headers=keyed(b"x" * 256)
    )
    assert (response.status_code, response.json()["error"]) == (400, "invalid_request")
    assert await db.fetchval("SELECT count(*) FROM claims") == 0


async def test_many_concurrent_retries_of_one_key_make_one_claim(
    client: Client, db: Connection
) -> None:
    await create_coupon(client, "RUSH", 100)
    answers = await asyncio.gather(
        *(post_keyed_claim(client, "same-key", "carol", "RUSH") for _ in range(50))
    )
    assert {a.status_code for a in answers} == {200}
    assert len({a.content for a in answers}) == 1
    assert sum("idempotent-replayed" not in a.headers for a in answers) == 1
    assert await db.fetchval("SELECT count(*) FROM claims WHERE coupon_name = 'RUSH'") == 1
    assert await db.fetchval("SELECT count(*) FROM idempotency_keys") == 1


async def test_two_keys_for_one_user_in_one_batch_are_decided_in_turn(
    client: Client, db: Connection
) -> None:
    await create_coupon(client, "TWO", 10)
    answers = await asyncio.gather(
        *(post_keyed_claim(client, f"dave-{n}", "dave", "TWO") for n in range(5)),
        *(post_claim(client, "dave", "TWO") for _ in range(5)),
    )
    assert sorted(a.status_code for a in answers) == [200] + [409] * 9
    assert await db.fetchval("SELECT count(*) FROM claims") == 1
    stored = await db.fetch("SELECT key, outcome FROM idempotency_keys ORDER BY key")
    by_key = {row["key"]: row["outcome"] for row in stored}
    assert sorted(by_key.values()).count("already_claimed") >= 4
    for n in range(5):  # each key replays what it was answered
        first = answers[n]
        assert_replay(first, await post_keyed_claim(client, f"dave-{n}", "dave", "TWO"))


async def test_keys_of_several_coupons_in_one_batch_each_replay_their_answer(
    client: Client, db: Connection
) -> None:
    for coupon, amount in (("M1", 5), ("M2", 1), ("M3", 5)):
        await create_coupon(client, coupon, amount)
    await claim_coupon(client, "held", "M3")
    answers = await asyncio.gather(
        post_keyed_claim(client, "m1", "ann", "M1"),
        post_keyed_claim(client, "m2a", "bob", "M2"),
        post_keyed_claim(client, "m2b", "cid", "M2"),  # one of bob and cid: sold out
        post_claim(client, "dan", "M1"),
        post_claim(client, "eve", "M3"),
        client.delete("/api/coupons/M3/claims/held", headers=keyed("m3")),
    )
    assert sorted(a.status_code for a in answers[1:3]) == [200, 409]
    assert [answers[0].status_code, *(a.status_code for a in answers[3:])] == [200, 200, 200, 204]
    keyed_claims = [("m1", "ann", "M1"), ("m2a", "bob", "M2"), ("m2b", "cid", "M2")]
    for (key, user, coupon), first in zip(keyed_claims, answers[:3], strict=True):
        assert_replay(first, await post_keyed_claim(client, key, user, coupon))
    again = await client.delete("/api/coupons/M3/claims/held", headers=keyed("m3"))
    assert_replay(answers[5], again)
    assert await db.fetchval("SELECT count(*) FROM idempotency_keys") == 4
    assert await db.fetchval("SELECT count(*) FROM claims WHERE coupon_name = 'M2'") == 1


async def test_a_release_key_on_another_user_is_refused(client: Client, db: Connection) -> None:
    await create_coupon(client, "RK", 5)
    await claim_coupon(client, "ann", "RK")
    await claim_coupon(client, "ben", "RK")
    first = await client.delete("/api/coupons/RK/claims/ann", headers=keyed("rk"))
    assert first.status_code == 204
    other = await client.delete("/api/coupons/RK/claims/ben", headers=keyed("rk"))
    assert (other.status_code, other.json()["error"]) == (422, "idempotency_key_reused")
    assert "idempotent-replayed" not in other.headers
    assert await db.fetchval("SELECT count(*) FROM claims WHERE user_id = 'ben'") == 1


async def test_keys_work_alike_with_a_transaction_per_claim(database: str, db: Connection) -> None:
    async with in_process_client(database, CLAIM_STRATEGY="transaction") as client:
        await create_coupon(client, "T", 5)
        first = await post_keyed_claim(client, "t-claim", "ann", "T")
        assert first.status_code == 200, first.text
        assert_replay(first, await post_keyed_claim(client, "t-claim", "ann", "T"))
        released = await client.delete("/api/coupons/T/claims/ann", headers=keyed("t-rel"))
        assert released.status_code == 204
        again = await client.delete("/api/coupons/T/claims/ann", headers=keyed("t-rel"))
        assert_replay(released, again)
    assert await db.fetchval("SELECT count(*) FROM claims") == 0
    assert await db.fetchval("SELECT count(*) FROM claim_history") == 1
