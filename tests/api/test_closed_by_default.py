"""Admin routes without ADMIN_TOKEN: open while the server listens on
loopback only; beyond loopback closed (401 naming the setting) unless
ADMIN_OPEN=true. The rule follows the listen address (APP_HOST), never the
client's. Anonymous reads of a user's claims follow it too (open mode)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.api import in_process_client
from tests.support.jwts import jwt_settings, write_public_key

BEYOND = "0.0.0.0"
COUPON = {"name": "DOORS", "amount": 2}


@pytest.mark.parametrize(
    ("environment", "status"),
    [
        ({}, 201),  # the default APP_HOST: 127.0.0.1
        ({"APP_HOST": "::1"}, 201),
        ({"APP_HOST": BEYOND}, 401),
        ({"APP_HOST": "shop.example"}, 401),  # a name may resolve beyond loopback
        ({"APP_HOST": BEYOND, "ADMIN_OPEN": "true"}, 201),
    ],
    ids=["default", "ipv6-loopback", "beyond", "a-name", "beyond-admin-open"],
)
async def test_admin_routes_follow_the_listen_address(
    database: str, environment: dict[str, str], status: int
) -> None:
    async with in_process_client(database, **environment) as client:
        created = await client.post("/api/coupons", json=COUPON)
        hooks = await client.get("/api/webhooks")
        events = await client.get("/api/events")
    assert (created.status_code, hooks.status_code) == (status, 200 if status == 201 else 401)
    assert events.status_code == (200 if status == 201 else 401)
    if status == 401:
        assert created.json()["error"] == "unauthorized"
        assert "ADMIN_TOKEN" in created.json()["message"]
        assert "ADMIN_OPEN" in created.json()["message"]


@pytest.mark.parametrize(
    ("environment", "status"),
    [
        ({}, 200),
        ({"APP_HOST": BEYOND, "ADMIN_TOKEN": "t0ken-0123456789"}, 401),
        ({"APP_HOST": BEYOND, "ADMIN_TOKEN": "t0ken-0123456789", "OPEN_CLAIM_READS": "true"}, 200),
        ({"OPEN_CLAIM_READS": "false", "ADMIN_TOKEN": "t0ken-0123456789"}, 401),
    ],
    ids=["loopback", "beyond", "beyond-open-reads", "loopback-closed-reads"],
)
async def test_anonymous_reads_of_a_users_claims_follow_open_claim_reads(
    database: str, environment: dict[str, str], status: int
) -> None:
    admin = {"authorization": "Bearer t0ken-0123456789"}
    async with in_process_client(database, **environment) as client:
        assert (await client.post("/api/coupons", json=COUPON, headers=admin)).status_code == 201
        claim = {"user_id": "alice", "coupon_name": "DOORS"}
        assert (await client.post("/api/coupons/claim", json=claim)).status_code == 200
        mine = await client.get("/api/users/alice/claims")
        one = await client.get("/api/coupons/DOORS/claims/alice")
    assert (mine.status_code, one.status_code) == (status, status)


async def test_hide_claimers_hides_them_from_anonymous_readers_only(database: str) -> None:
    backend = {"authorization": "Bearer shop-0123456789"}
    async with in_process_client(
        database, HIDE_CLAIMERS="true", BACKEND_TOKEN="shop-0123456789"
    ) as client:
        assert (await client.post("/api/coupons", json=COUPON)).status_code == 201
        claim = {"user_id": "alice", "coupon_name": "DOORS"}
        assert (await client.post("/api/coupons/claim", json=claim)).status_code == 200
        anonymous = (await client.get("/api/coupons/DOORS")).json()
        shown = (await client.get("/api/coupons/DOORS", headers=backend)).json()
        listed = await client.get("/api/coupons/DOORS/claims")
        listed_for_backend = await client.get("/api/coupons/DOORS/claims", headers=backend)
    assert (anonymous["claimed_by"], anonymous["remaining_amount"]) == ([], 1)
    assert shown["claimed_by"] == ["alice"]
    assert (listed.status_code, listed.json()["error"]) == (401, "unauthorized")
    assert listed_for_backend.status_code == 200


@pytest.mark.parametrize("mode", ["user", "backend"])
async def test_open_admin_routes_do_not_open_claims_in_user_or_backend_mode(
    database: str, tmp_path: Path, mode: str
) -> None:
    """On loopback without ADMIN_TOKEN a caller without a credential acts as
    the operator on admin routes, never as a claimer where CLAIM_AUTH asks
    for a credential."""
    settings = jwt_settings(key_file=write_public_key(tmp_path))
    async with in_process_client(database, CLAIM_AUTH=mode, **settings) as client:
        assert (await client.post("/api/coupons", json=COUPON)).status_code == 201
        claim = {"user_id": "alice", "coupon_name": "DOORS"}
        refused = await client.post("/api/coupons/claim", json=claim)
    assert (refused.status_code, refused.json()["error"]) == (401, "unauthorized")
