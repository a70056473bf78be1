"""With ADMIN_TOKEN set, creating coupons needs the bearer token; claims and
reads stay open. Without it, creation is open and the log says so."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from flashsale.config import load_settings
from flashsale.wiring import create_app
from tests.support import start_server

Client = AsyncTestClient[Any]
TOKEN = "test-admin-token-\u00e9-0123456789"
COUPON = {"name": "GUARDED", "amount": 3}


@pytest.fixture
async def guarded(database: str) -> AsyncIterator[Client]:
    settings = load_settings({"DATABASE_URL": database, "DB_POOL_MIN": "1", "ADMIN_TOKEN": TOKEN})
    async with AsyncTestClient(app=create_app(settings)) as client:
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


async def test_without_admin_token_creation_is_open_and_the_start_up_log_warns(
    database: str, tmp_path: Path
) -> None:
    server = start_server(database, tmp_path / "open.log", env={"ADMIN_TOKEN": ""})
    try:
        assert "ADMIN_TOKEN is not set" in server.log()
    finally:
        assert server.stop() == 0


async def test_with_admin_token_the_start_up_log_does_not_warn_nor_show_it(
    database: str, tmp_path: Path
) -> None:
    server = start_server(database, tmp_path / "closed.log", env={"ADMIN_TOKEN": "tok-SECRET-42"})
    try:
        log = server.log()
    finally:
        assert server.stop() == 0
    assert "ADMIN_TOKEN is not set" not in log
    assert "tok-SECRET-42" not in log + server.log()
