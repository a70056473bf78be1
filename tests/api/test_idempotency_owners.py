"""Idempotency keys belong to their caller (issue 24): the operator's and
the backend's to their token's name, an anonymous claim's to its user. One
owner's key never answers nor blocks another's request; a request refused as
sent stores no key; each caller stores at most its quota of keys."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest

from tests.support.api import Client, create_coupon, in_process_client, post_keyed_claim

if TYPE_CHECKING:
    Connection = asyncpg.Connection[Any]

TOKEN = "s3cret-admin"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
JSON = {"Content-Type": "application/json"}


@pytest.fixture
async def guarded(database: str) -> AsyncIterator[Client]:
    """With ADMIN_TOKEN set, a claim without a token is an anonymous caller's."""
    async with in_process_client(database, ADMIN_TOKEN=TOKEN) as client:
        yield client


async def test_an_attackers_key_no_longer_blocks_the_real_clients_claim(
    guarded: Client, db: Connection
) -> None:
    await create_coupon(guarded, "SALE", 5, ADMIN)
    first = await post_keyed_claim(guarded, "order-1001", "mallory", "SALE")
    assert first.status_code == 200, first.text
    real = await post_keyed_claim(guarded, "order-1001", "alice", "SALE")
    assert real.status_code == 200, real.text  # was 422 idempotency_key_reused
    assert real.json()["user_id"] == "alice"
    assert "idempotent-replayed" not in real.headers
    assert await db.fetchval("SELECT count(*) FROM claims WHERE coupon_name = 'SALE'") == 2
    assert await db.fetchval("SELECT count(*) FROM idempotency_keys") == 2


async def test_a_key_and_body_known_do_not_read_another_callers_answer(
    guarded: Client, db: Connection
) -> None:
    await create_coupon(guarded, "SHOP", 5, ADMIN)
    # The shop's backend stores it; the same key and body come anonymously.
    stored = await post_keyed_claim(guarded, "order-2002", "alice", "SHOP", ADMIN)
    assert stored.status_code == 200, stored.text
    assert_replayed = await post_keyed_claim(guarded, "order-2002", "alice", "SHOP", ADMIN)
    assert assert_replayed.headers["idempotent-replayed"] == "true"
    stolen = await post_keyed_claim(guarded, "order-2002", "alice", "SHOP")
    assert (stolen.status_code, stolen.json()["error"]) == (409, "already_claimed")
    assert "idempotent-replayed" not in stolen.headers
    assert stolen.content != stored.content


async def test_an_anonymous_users_retry_is_still_replayed(guarded: Client) -> None:
    await create_coupon(guarded, "RETRY", 5, ADMIN)
    first = await post_keyed_claim(guarded, "k-1", "bob", "RETRY")
    retry = await post_keyed_claim(guarded, "k-1", "bob", "RETRY")
    assert (first.status_code, retry.status_code) == (200, 200)
    assert retry.content == first.content
    assert retry.headers["idempotent-replayed"] == "true"


async def test_a_request_refused_as_sent_keeps_no_key(client: Client, db: Connection) -> None:
    created = await client.post("/api/coupons", json={"name": "WIN", "amount": 5})
    assert created.status_code == 201
    key = {**JSON, "Idempotency-Key": "fix-me"}
    past = json.dumps({"ends_at": "2001-01-01T00:00:00Z"})
    refused = await client.patch("/api/coupons/WIN", content=past, headers=key)
    assert (refused.status_code, refused.json()["error"]) == (400, "invalid_request")
    assert await db.fetchval("SELECT count(*) FROM idempotency_keys") == 0
    fixed = await client.patch("/api/coupons/WIN", content=json.dumps({"amount": 7}), headers=key)
    assert fixed.status_code == 200, fixed.text  # not 422: the 400 kept nothing
    assert fixed.json()["amount"] == 7
    again = await client.patch("/api/coupons/WIN", content=json.dumps({"amount": 7}), headers=key)
    assert again.headers["idempotent-replayed"] == "true"


async def test_an_invalid_body_keeps_no_key(guarded: Client, db: Connection) -> None:
    await create_coupon(guarded, "BAD", 5, ADMIN)
    response = await guarded.post(
        "/api/coupons/claim",
        content=b'{"user_id": "", "coupon_name": "BAD"}',
        headers={**JSON, "Idempotency-Key": "k"},
    )
    assert response.status_code == 400
    assert await db.fetchval("SELECT count(*) FROM idempotency_keys") == 0
    assert (await post_keyed_claim(guarded, "k", "ann", "BAD")).status_code == 200


async def test_anonymous_keys_are_bounded_per_client_address(database: str, db: Connection) -> None:
    async with in_process_client(
        database, ADMIN_TOKEN=TOKEN, IDEMPOTENCY_KEYS_PER_IDENTITY="2"
    ) as client:
        await create_coupon(client, "QUOTA", 10, ADMIN)
        for n, user in enumerate(("u1", "u2")):
            assert (await post_keyed_claim(client, f"q-{n}", user, "QUOTA")).status_code == 200
        # Another user, the same address.
        over = await post_keyed_claim(client, "q-3", "u3", "QUOTA")
        assert over.status_code == 429
        assert over.json()["error"] == "too_many_keys"
        assert int(over.headers["retry-after"]) > 0
        plain = await client.post(
            "/api/coupons/claim", json={"user_id": "u3", "coupon_name": "QUOTA"}
        )
        assert plain.status_code == 200  # without a key, as before
        retry = await post_keyed_claim(client, "q-3", "u4", "QUOTA")
        assert retry.status_code == 429
    assert await db.fetchval("SELECT count(*) FROM idempotency_keys") == 2


async def test_a_tokens_keys_are_bounded_by_their_own_quota(database: str, db: Connection) -> None:
    async with in_process_client(
        database,
        ADMIN_TOKEN=TOKEN,
        IDEMPOTENCY_KEYS_PER_IDENTITY="1",
        IDEMPOTENCY_KEYS_PER_CREDENTIAL="2",
    ) as client:
        for n in range(2):
            response = await client.post(
                "/api/coupons",
                json={"name": f"K{n}", "amount": 1},
                headers={**ADMIN, "Idempotency-Key": f"c-{n}"},
            )
            assert response.status_code == 201
        over = await client.post(
            "/api/coupons",
            json={"name": "K2", "amount": 1},
            headers={**ADMIN, "Idempotency-Key": "c-2"},
        )
        assert (over.status_code, over.json()["error"]) == (429, "too_many_keys")
        assert set(over.json()) == {"error", "message"}
    assert await db.fetchval("SELECT count(*) FROM coupons WHERE name = 'K2'") == 0
    assert await db.fetchval("SELECT count(*) FROM idempotency_keys") == 2
