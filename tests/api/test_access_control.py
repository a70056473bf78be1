"""With ADMIN_TOKEN set, creating coupons needs the bearer token; claims and
reads stay open (tests/e2e/test_admin_token_warning.py: without it, creation
is open and the start-up log says so)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from tests.support.api import Client, in_process_client

TOKEN = "test-admin-token-\u00e9-0123456789"
COUPON = {"name": "GUARDED", "amount": 3}


@pytest.fixture
async def guarded(database: str) -> AsyncIterator[Client]:
    async with in_process_client(database, ADMIN_TOKEN=TOKEN) as client:
        yield client


def as_bytes(headers: dict[str, str | bytes]) -> dict[bytes, bytes]:
    return {k.encode(): v if isinstance(v, bytes) else v.encode() for k, v in headers.items()}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": ""},
        {"authorization": "Bearer"},
        {"authorization": "Bearer "},
        {"authorization": "Basic dXNlcjpwYXNz"},
        {"authorization": "Bearer wrong-token"},
        {"authorization": "Bearer test-admin-token"},  # a prefix of the real one
        {"authorization": "Bearer " + "x" * 10_000},
        {"authorization": "Bearer\ttest-admin-token-x"},
        {"authorization": "Token test-admin-token-\u00e9-0123456789".encode()},
    ],
    ids=lambda headers: repr(headers.get("authorization"))[:24],
)
async def test_creating_without_the_admin_token_is_unauthorized(
    guarded: Client, db: asyncpg.Connection[Any], headers: dict[str, str | bytes]
) -> None:
    response = await guarded.post("/api/coupons", json=COUPON, headers=as_bytes(headers))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"] == "unauthorized"
    assert TOKEN not in response.text
    assert await db.fetchval("SELECT count(*) FROM coupons") == 0


async def test_the_admin_token_creates_and_anyone_may_claim_and_read(guarded: Client) -> None:
    for scheme in ("Bearer", "bearer"):
        headers = {b"authorization": f"{scheme} {TOKEN}".encode()}  # UTF-8 on the wire
        name = f"G-{scheme}"
        created = await guarded.post("/api/coupons", json={**COUPON, "name": name}, headers=headers)
        assert created.status_code == 201
        claimed = await guarded.post(
            "/api/coupons/claim", json={"user_id": "anyone", "coupon_name": name}
        )
        assert claimed.status_code == 200
        read = await guarded.get(f"/api/coupons/{name}")
        assert read.json()["claimed_by"] == ["anyone"]
    assert (await guarded.get("/health")).status_code == 200


async def test_the_token_is_checked_before_the_body_is_read(guarded: Client) -> None:
    response = await guarded.post(
        "/api/coupons", content=b"not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 401


async def test_a_release_needs_the_admin_token_and_answers_as_the_other_admin_routes(
    guarded: Client, db: asyncpg.Connection[Any]
) -> None:
    """DELETE of a claim is answered by ClaimEndpoint, not by Litestar's guard:
    the same 401 (status, challenge, body) as creation, then 204 with it."""
    admin = {b"authorization": f"Bearer {TOKEN}".encode()}
    assert (await guarded.post("/api/coupons", json=COUPON, headers=admin)).status_code == 201
    claim = {"user_id": "a/b c", "coupon_name": "GUARDED"}
    assert (await guarded.post("/api/coupons/claim", json=claim)).status_code == 200
    path = "/api/coupons/GUARDED/claims/a%2Fb%20c"
    refused = await guarded.delete(path, headers={"authorization": "Bearer wrong-token"})
    created = await guarded.post("/api/coupons", json={**COUPON, "name": "X"})
    assert (refused.status_code, created.status_code) == (401, 401)
    assert refused.headers["www-authenticate"] == created.headers["www-authenticate"]
    assert refused.json() == created.json()
    assert await db.fetchval("SELECT count(*) FROM claims") == 1
    released = await guarded.delete(path, headers=admin)
    assert (released.status_code, released.content) == (204, b"")
    assert "content-length" not in released.headers
    assert await db.fetchval("SELECT count(*) FROM claims") == 0
    again = await guarded.delete(path, headers=admin)
    assert (again.status_code, again.json()["error"]) == (404, "claim_not_found")
