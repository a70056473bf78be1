"""Reading coupons of any size: the streamed coupon keeps the original JSON,
claims and coupons page with opaque cursors, and bad paging input is a 400."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import asyncpg
import pytest

from flashsale.storage.admin import seed_coupon
from tests.support.api import Client, claim_coupon, create_coupon, sale_fields
from tests.support.invariants import assert_invariants

if TYPE_CHECKING:
    Connection = asyncpg.Connection[Any]


async def test_a_coupon_with_many_claimers_streams_them_all_in_claim_order(
    client: Client, db: Connection, database: str
) -> None:
    # Claims seeded in one statement: several FETCH batches, several chunks.
    await seed_coupon(database, "MANY", 50_000, claims=45_000)
    response = await client.get("/api/coupons/MANY")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["name"] == "MANY"
    assert (body["amount"], body["remaining_amount"]) == (50_000, 5_000)
    assert body["claimed_by"] == [f"user-{i}" for i in range(1, 45_001)]
    await assert_invariants(db)


async def test_a_streamed_coupon_keeps_the_original_json_for_odd_user_ids(
    client: Client,
) -> None:
    await create_coupon(client, "ODD", 3)
    users = ['quote " and \\ backslash', "ünïcødé 🎟", "</script>"]
    for user in users:
        await claim_coupon(client, user, "ODD")
    response = await client.get("/api/coupons/ODD")
    assert response.json() == {
        "name": "ODD",
        "amount": 3,
        "remaining_amount": 0,
        "claimed_by": users,
        **sale_fields("sold_out"),
    }


async def test_claims_page_through_every_claimer_with_a_cursor(client: Client) -> None:
    await create_coupon(client, "PAGED", 10)
    users = [f"u{i}" for i in range(5)]
    for user in users:
        await claim_coupon(client, user, "PAGED")
    seen: list[str] = []
    after: str | None = None
    pages = 0
    while True:
        params = {"limit": "2"} | ({"after": after} if after else {})
        response = await client.get("/api/coupons/PAGED/claims", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        seen += [item["user_id"] for item in page["claims"]]
        assert all("claimed_at" in item for item in page["claims"])
        pages += 1
        after = page["next"]
        if after is None:
            break
    assert seen == users
    assert pages == 3


async def test_claims_of_an_unclaimed_coupon_are_an_empty_last_page(client: Client) -> None:
    await create_coupon(client, "QUIET", 1)
    response = await client.get("/api/coupons/QUIET/claims")
    assert response.json() == {"claims": [], "next": None}


async def test_claims_of_a_missing_coupon_are_a_404(client: Client) -> None:
    response = await client.get("/api/coupons/NOPE/claims")
    assert response.status_code == 404
    assert response.json()["error"] == "coupon_not_found"


async def test_coupons_are_listed_by_name_with_their_stock_a_page_at_a_time(
    client: Client,
) -> None:
    for name, amount in [("b-two", 2), ("a-one", 1), ("c-three", 3)]:
        await create_coupon(client, name, amount)
    await claim_coupon(client, "someone", "c-three")
    first = (await client.get("/api/coupons", params={"limit": "2"})).json()
    assert first["coupons"] == [
        {"name": "a-one", "amount": 1, "remaining_amount": 1, **sale_fields()},
        {"name": "b-two", "amount": 2, "remaining_amount": 2, **sale_fields()},
    ]
    assert first["next"] is not None
    second = (await client.get("/api/coupons", params={"after": first["next"]})).json()
    assert second == {
        "coupons": [{"name": "c-three", "amount": 3, "remaining_amount": 2, **sale_fields()}],
        "next": None,
    }


async def test_no_coupons_list_as_an_empty_page(client: Client) -> None:
    response = await client.get("/api/coupons")
    assert response.status_code == 200
    assert response.json() == {"coupons": [], "next": None}


BAD_PAGING = [
    {"limit": "0"},
    {"limit": "1001"},
    {"limit": "-1"},
    {"limit": "ten"},
    {"limit": "1.5"},
    {"limit": ""},
    {"after": "not a cursor"},
    {"after": "%%%"},
    {"after": "x" * 500},
    {"after": "_w"},  # not ASCII once decoded
    {"after": ""},
]


@pytest.mark.parametrize("params", BAD_PAGING)
@pytest.mark.parametrize("path", ["/api/coupons", "/api/coupons/SOME/claims"])
async def test_garbage_paging_input_is_a_400_with_a_json_error(
    client: Client, path: str, params: dict[str, str]
) -> None:
    await create_coupon(client, "SOME", 1)
    response = await client.get(path, params=params)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "invalid_request"
    assert ("limit" in body["message"]) == ("limit" in params)


@pytest.mark.parametrize("cursor", ["MA", "LTE", "YWJj", "OTIyMzM3MjAzNjg1NDc3NTgwOA"])
async def test_a_claims_cursor_must_stand_for_a_claim_id(client: Client, cursor: str) -> None:
    # "0", "-1", "abc" and 2**63 are well-formed base64 but no claim id.
    await create_coupon(client, "SOME", 1)
    response = await client.get("/api/coupons/SOME/claims", params={"after": cursor})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


async def test_listing_routes_leave_create_claim_and_read_where_they_were(
    client: Client, db: Connection
) -> None:
    await create_coupon(client, "ROUTES", 2)
    await claim_coupon(client, "u1", "ROUTES")
    assert (await client.get("/api/coupons/ROUTES")).json()["claimed_by"] == ["u1"]
    assert (await client.get("/api/coupons")).json()["coupons"][0]["name"] == "ROUTES"
    assert (await client.get("/api/coupons/ROUTES/claims")).json()["claims"][0]["user_id"] == "u1"
    wrong = await client.delete("/api/coupons/ROUTES/claims")
    assert wrong.status_code == 405
    await assert_invariants(db)
