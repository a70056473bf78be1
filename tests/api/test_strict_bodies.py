"""Bad input stays data (issue 24): a JSON body repeating a key is a 400 on
every route that reads one (the raw claim endpoint included), and an admin
body with a field its route does not take is a 400, where it used to be
silently ignored. Each with the usual error body, and nothing changes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import asyncpg
import pytest

from tests.api.test_hostile_input import assert_clean_error
from tests.support.api import Client, create_coupon

if TYPE_CHECKING:
    Connection = asyncpg.Connection[Any]

JSON = {"content-type": "application/json"}

DUPLICATES: list[tuple[str, str, str, bytes]] = [
    ("claim: the user twice", "POST", "/api/coupons/claim",
     b'{"user_id": "mallory", "coupon_name": "C", "user_id": "alice"}'),
    ("claim: the coupon twice", "POST", "/api/coupons/claim",
     b'{"coupon_name": "C", "user_id": "u", "coupon_name": "C"}'),
    ("claim: in an extra field", "POST", "/api/coupons/claim",
     b'{"user_id": "u", "coupon_name": "C", "x": {"k": 1, "k": 2}}'),
    ("claim: an escaped spelling of the same key", "POST", "/api/coupons/claim",
     b'{"user_id": "u", "coupon_name": "C", "user\\u005fid": "v"}'),
    ("create: the amount twice", "POST", "/api/coupons",
     b'{"name": "NEW", "amount": 1, "amount": 1000}'),
    ("change: active twice", "PATCH", "/api/coupons/C",
     b'{"active": true, "active": false}'),
    ("webhook registration: the url twice", "POST", "/api/webhooks",
     b'{"url": "http://127.0.0.1:9/a", "url": "http://127.0.0.1:9/b"}'),
]  # fmt: skip


@pytest.mark.parametrize(
    ("what", "method", "path", "body"), DUPLICATES, ids=[case[0] for case in DUPLICATES]
)
async def test_a_repeated_key_is_a_400_and_changes_nothing(
    client: Client, db: Connection, what: str, method: str, path: str, body: bytes
) -> None:
    await create_coupon(client, "C", 5)
    response = await client.request(method, path, content=body, headers=JSON)
    assert_clean_error(response, 400, "invalid_request")
    assert "repeats the key" in response.json()["message"]
    assert await db.fetchval("SELECT count(*) FROM coupons") == 1
    assert await db.fetchval("SELECT count(*) FROM claims") == 0
    assert await db.fetchval("SELECT count(*) FROM webhooks") == 0
    assert await db.fetchval("SELECT active FROM coupons") is True


UNKNOWN: list[tuple[str, str, str, bytes, str]] = [
    ("create", "POST", "/api/coupons", b'{"name": "NEW", "amount": 1, "stock": 5}', "stock"),
    ("change: a misspelt active", "PATCH", "/api/coupons/C", b'{"actve": false}', "actve"),
    ("change: beside a known field", "PATCH", "/api/coupons/C",
     b'{"amount": 9, "remaining_amount": 9}', "remaining_amount"),
    ("webhook registration", "POST", "/api/webhooks",
     b'{"url": "http://127.0.0.1:9/a", "event": ["claimed"]}', "event"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("what", "method", "path", "body", "field"), UNKNOWN, ids=[case[0] for case in UNKNOWN]
)
async def test_an_unknown_admin_field_is_a_400_naming_it(
    client: Client, db: Connection, what: str, method: str, path: str, body: bytes, field: str
) -> None:
    await create_coupon(client, "C", 5)
    response = await client.request(method, path, content=body, headers=JSON)
    assert_clean_error(response, 400, "invalid_request")
    assert repr(field) in response.json()["message"]
    assert await db.fetchval("SELECT count(*) FROM coupons") == 1
    assert await db.fetchval("SELECT (amount, active) FROM coupons") == (5, True)
    assert await db.fetchval("SELECT count(*) FROM webhooks") == 0


async def test_the_original_clients_bodies_are_taken(client: Client) -> None:
    created = await client.post(
        "/api/coupons", content=b'{"name": "PROMO_SUPER", "amount": 100}', headers=JSON
    )
    assert created.status_code == 201
    claimed = await client.post(
        "/api/coupons/claim",
        content=b'{"user_id": "user_12345", "coupon_name": "PROMO_SUPER"}',
        headers=JSON,
    )
    assert claimed.status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        b'{"user_id": "a:b", "coupon_name": "C"}',  # a colon in a value: the exact check
        b'{"user_id": "u", "coupon_name": "C", "source": {"app": "ios"}}',  # claims stay lenient
        b'{"user_id":"u","coupon_name":"C"}',
    ],
)
async def test_a_claim_without_repeats_is_taken(client: Client, body: bytes) -> None:
    await create_coupon(client, "C", 5)
    response = await client.post("/api/coupons/claim", content=body, headers=JSON)
    assert response.status_code == 200, response.text
