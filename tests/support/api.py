"""The app in process over ASGI (the same HTTP semantics, no socket), and the
one set of create and claim helpers for it: ``post_*`` return the response
for the test to judge; ``create_coupon`` and ``claim_coupon`` are set-up
steps that must succeed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from litestar.testing import AsyncTestClient

from flashsale.config import load_settings
from flashsale.wiring import create_app

Client = AsyncTestClient[Any]


@asynccontextmanager
async def in_process_client(database: str, **environment: str) -> AsyncIterator[Client]:
    """A client of the app configured by ``environment`` on ``database``."""
    settings = load_settings({"DATABASE_URL": database, "DB_POOL_MIN": "1", **environment})
    async with AsyncTestClient(app=create_app(settings)) as client:
        yield client


async def post_coupon(
    client: Client, name: str, amount: object, headers: dict[str, str] | None = None
) -> httpx.Response:
    return await client.post("/api/coupons", json={"name": name, "amount": amount}, headers=headers)


async def post_claim(client: Client, user: str, coupon: str) -> httpx.Response:
    return await client.post("/api/coupons/claim", json={"user_id": user, "coupon_name": coupon})


async def post_keyed_claim(
    client: Client, key: str, user: str, coupon: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    """A claim with an Idempotency-Key (and any other ``headers``)."""
    body = json.dumps({"user_id": user, "coupon_name": coupon})
    keyed = {"Content-Type": "application/json", "Idempotency-Key": key, **(headers or {})}
    return await client.post("/api/coupons/claim", content=body, headers=keyed)


async def create_coupon(
    client: Client, name: str, amount: int, headers: dict[str, str] | None = None
) -> None:
    response = await post_coupon(client, name, amount, headers)
    assert response.status_code == 201, response.text


async def claim_coupon(client: Client, user: str, coupon: str) -> None:
    response = await post_claim(client, user, coupon)
    assert response.status_code == 200, response.text


def sale_fields(status: str = "active", redeemed: int = 0) -> dict[str, object]:
    """The coupon body's fields beside the original ones, for a coupon
    created without window or holds."""
    return {
        "status": status,
        "starts_at": None,
        "ends_at": None,
        "hold_seconds": None,
        "redeemed": redeemed,
        **FIRST_COME,
    }


# A first-come coupon's raffle fields (issue 27).
FIRST_COME: dict[str, object] = {
    "allocation": "first_come",
    "draw_at": None,
    "draw_commitment": None,
    "draw_seed": None,
    "entries": None,
    "draw_winners": None,
    "waitlisted": None,
}
