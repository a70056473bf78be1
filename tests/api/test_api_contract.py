"""The original design's contract, over HTTP: walk-through, every status code,
error bodies and validation rules."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from tests.support.api import Client, post_claim, post_coupon, sale_fields
from tests.support.invariants import assert_invariants


async def test_the_original_walk_through(client: Client, db: asyncpg.Connection[Any]) -> None:
    created = await post_coupon(client, "PROMO_SUPER", 100)
    assert created.status_code == 201
    claimed = await post_claim(client, "user_12345", "PROMO_SUPER")
    assert claimed.status_code == 200
    details = await client.get("/api/coupons/PROMO_SUPER")
    assert details.status_code == 200
    assert details.json() == {
        "name": "PROMO_SUPER",
        "amount": 100,
        "remaining_amount": 99,
        "claimed_by": ["user_12345"],
        **sale_fields(),
    }
    await assert_invariants(db)


async def test_a_new_coupon_has_full_stock_and_no_claimers(client: Client) -> None:
    await post_coupon(client, "FRESH", 3)
    assert (await client.get("/api/coupons/FRESH")).json() == {
        "name": "FRESH",
        "amount": 3,
        "remaining_amount": 3,
        "claimed_by": [],
        **sale_fields(),
    }


async def test_creating_an_existing_coupon_is_a_conflict(client: Client) -> None:
    await post_coupon(client, "TWICE", 5)
    response = await post_coupon(client, "TWICE", 7)
    assert response.status_code == 409
    assert response.json()["error"] == "coupon_exists"
    assert (await client.get("/api/coupons/TWICE")).json()["amount"] == 5


async def test_claiming_an_unknown_coupon_is_not_found(client: Client) -> None:
    response = await post_claim(client, "u1", "NOPE")
    assert response.status_code == 404
    assert response.json() == {
        "error": "coupon_not_found",
        "message": "coupon 'NOPE' does not exist",
    }


async def test_reading_an_unknown_coupon_is_not_found(client: Client) -> None:
    response = await client.get("/api/coupons/NOPE")
    assert response.status_code == 404
    assert response.json()["error"] == "coupon_not_found"


async def test_a_second_claim_by_the_same_user_is_already_claimed(client: Client) -> None:
    await post_coupon(client, "ONCE", 5)
    assert (await post_claim(client, "alice", "ONCE")).status_code == 200
    second = await post_claim(client, "alice", "ONCE")
    assert second.status_code == 409
    assert second.json()["error"] == "already_claimed"


async def test_claims_past_the_stock_are_sold_out(
    client: Client, db: asyncpg.Connection[Any]
) -> None:
    await post_coupon(client, "SCARCE", 2)
    statuses = [(await post_claim(client, f"user{i}", "SCARCE")).status_code for i in range(3)]
    assert statuses == [200, 200, 409]
    last = await post_claim(client, "user9", "SCARCE")
    assert last.json()["error"] == "sold_out"
    assert (await client.get("/api/coupons/SCARCE")).json() == {
        "name": "SCARCE",
        "amount": 2,
        "remaining_amount": 0,
        "claimed_by": ["user0", "user1"],
        **sale_fields("sold_out"),
    }
    await assert_invariants(db)


async def test_a_holder_hears_already_claimed_even_when_sold_out(client: Client) -> None:
    await post_coupon(client, "LAST", 1)
    assert (await post_claim(client, "holder", "LAST")).status_code == 200
    assert (await post_claim(client, "late", "LAST")).json()["error"] == "sold_out"
    again = await post_claim(client, "holder", "LAST")
    assert again.status_code == 409
    assert again.json()["error"] == "already_claimed"


async def test_claimers_are_listed_in_claim_order(client: Client) -> None:
    await post_coupon(client, "ORDER", 10)
    users = ["zed", "amy", "mo", "bea"]
    for user in users:
        await post_claim(client, user, "ORDER")
    assert (await client.get("/api/coupons/ORDER")).json()["claimed_by"] == users


async def test_health_answers_when_the_database_does(client: Client) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


async def test_unknown_routes_and_methods_get_json_errors(client: Client) -> None:
    missing = await client.get("/api/nothing-here")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    wrong_method = await client.delete("/api/coupons/X")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"] == "method_not_allowed"


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/api/coupons", {"GET", "OPTIONS", "POST"}),  # two handlers on one path
        ("/api/coupons/claim", {"OPTIONS", "POST"}),
        ("/api/coupons/X", {"GET", "OPTIONS", "PATCH"}),
        ("/api/coupons/X/claims/u%2F1", {"DELETE", "GET", "OPTIONS"}),
        ("/api/coupons/X/claims/u%2F1/redeem", {"OPTIONS", "POST"}),
        ("/api/users/u%2F1/claims", {"GET", "OPTIONS"}),
        ("/api/webhooks", {"GET", "OPTIONS", "POST"}),
        ("/api/webhooks/1", {"DELETE", "GET", "OPTIONS"}),
        ("/api/webhooks/1/replay", {"OPTIONS", "POST"}),
        ("/health", {"GET", "OPTIONS"}),
    ],
)
async def test_options_and_405_name_every_method_of_a_path(
    client: Client, path: str, allowed: set[str]
) -> None:
    options = await client.options(path)
    assert options.status_code == 204
    assert set(options.headers["allow"].split(", ")) == allowed
    wrong_method = await client.put(path, json={})
    assert wrong_method.status_code == 405
    assert set(wrong_method.headers["allow"].split(", ")) == allowed


INVALID_CREATES: list[tuple[bytes, str]] = [
    (b"not json", "not valid JSON"),
    (b"[1, 2]", "JSON object"),
    (b'"text"', "JSON object"),
    (b"{}", "name is required"),
    (b'{"name": "A"}', "amount is required"),
    (b'{"name": "", "amount": 1}', "name must be"),
    (b'{"name": "has space", "amount": 1}', "name must be"),
    (b'{"name": "slash/no", "amount": 1}', "name must be"),
    (b'{"name": "' + b"x" * 65 + b'", "amount": 1}', "name must be"),
    ('{"name": "caf\u00e9", "amount": 1}'.encode(), "name must be"),
    (b'{"name": "A", "amount": 0}', "amount must be"),
    (b'{"name": "A", "amount": -5}', "amount must be"),
    (b'{"name": "A", "amount": 2147483648}', "amount must be"),
    (b'{"name": "A", "amount": 18446744073709551616}', "amount must be"),
    (b'{"name": "A", "amount": true}', "amount must be"),
    (b'{"name": "A", "amount": 1.0}', "amount must be"),
    (b'{"name": "A", "amount": 2.5}', "amount must be"),
    (b'{"name": "A", "amount": "5"}', "amount must be"),
    (b'{"name": "A", "amount": null}', "amount must be"),
    (b'{"name": 5, "amount": 1}', "name must be"),
]


@pytest.mark.parametrize(("body", "message"), INVALID_CREATES)
async def test_invalid_coupon_bodies_are_rejected_naming_the_field(
    client: Client, db: asyncpg.Connection[Any], body: bytes, message: str
) -> None:
    response = await client.post(
        "/api/coupons", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert message in response.json()["message"]
    assert await db.fetchval("SELECT count(*) FROM coupons") == 0


INVALID_CLAIMS: list[tuple[object, str]] = [
    ({"coupon_name": "C"}, "user_id is required"),
    ({"user_id": "u"}, "coupon_name is required"),
    ({"user_id": "", "coupon_name": "C"}, "user_id must be"),
    ({"user_id": "x" * 129, "coupon_name": "C"}, "user_id must be"),
    ({"user_id": "x" * 10_000, "coupon_name": "C"}, "user_id must be"),
    ({"user_id": "nul\u0000byte", "coupon_name": "C"}, "user_id must be"),
    ({"user_id": "tab\there", "coupon_name": "C"}, "user_id must be"),
    ({"user_id": "bell\u0085", "coupon_name": "C"}, "user_id must be"),
    ({"user_id": 42, "coupon_name": "C"}, "user_id must be"),
    ({"user_id": "u", "coupon_name": "C/D"}, "coupon_name must be"),
    ({"user_id": "u", "coupon_name": ""}, "coupon_name must be"),
    ([{"user_id": "u", "coupon_name": "C"}], "JSON object"),
]


@pytest.mark.parametrize(("body", "message"), INVALID_CLAIMS)
async def test_invalid_claim_bodies_are_rejected_naming_the_field(
    client: Client, db: asyncpg.Connection[Any], body: object, message: str
) -> None:
    await post_coupon(client, "C", 5)
    response = await client.post("/api/coupons/claim", json=body)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert message in response.json()["message"]
    assert await db.fetchval("SELECT count(*) FROM claims") == 0


async def test_user_ids_may_be_any_printable_text(client: Client) -> None:
    await post_coupon(client, "WIDE", 5)
    for user in ["ユーザー", "a b c", "x" * 128, "emoji-\U0001f600"]:
        assert (await post_claim(client, user, "WIDE")).status_code == 200


async def test_bodies_over_64_kib_are_too_large(client: Client) -> None:
    body = b'{"name": "BIG", "amount": 1, "pad": "' + b"x" * 70_000 + b'"}'
    response = await client.post(
        "/api/coupons", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"


async def test_a_body_that_is_not_json_by_content_type_is_unsupported(client: Client) -> None:
    response = await client.post(
        "/api/coupons", content=b"name=A&amount=1", headers={"content-type": "text/plain"}
    )
    assert response.status_code == 415
    assert response.json()["error"] == "unsupported_media_type"
