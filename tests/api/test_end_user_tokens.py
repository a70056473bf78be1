"""End users' JWTs (http/end_users.py): what a claim with one gets, each
way a token can be wrong (401 with the usual body), the user taken from
``sub``, HS256 claim tokens, and JWKS keys fetched from a real loopback
server: an unknown ``kid`` is 401 and asks for one refresh that then admits
it."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.api import Client, in_process_client
from tests.support.jwts import (
    AUDIENCE,
    ISSUER,
    JwksServer,
    bearer,
    jwk,
    jwt_settings,
    mint,
    mint_hs256,
    public_pem,
    write_public_key,
)

ADMIN = {"authorization": "Bearer ops-0123456789"}


@pytest.fixture
async def users_mode(database: str, tmp_path: Path) -> AsyncIterator[Client]:
    settings = jwt_settings(key_file=write_public_key(tmp_path))
    async with in_process_client(
        database, CLAIM_AUTH="user", ADMIN_TOKEN="ops-0123456789", **settings
    ) as client:
        for name in ("T1", "T2"):
            created = await client.post(
                "/api/coupons", json={"name": name, "amount": 50}, headers=ADMIN
            )
            assert created.status_code == 201
        yield client


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(alg: str, payload: dict[str, object], key: bytes = b"") -> str:
    """A token made by hand: alg none (no signature) or HMAC keyed by ``key``."""
    head = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    body = b64(json.dumps(payload).encode())
    if alg == "none":
        return f"{head}.{body}."
    signature = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(signature)}"


def claims(sub: str = "alice", **changes: object) -> dict[str, object]:
    return {"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 600, **changes}


BAD_TOKENS = {
    "expired": lambda: mint("alice", exp=int(time.time()) - 60),
    "wrong issuer": lambda: mint("alice", iss="https://evil.test/"),
    "wrong audience": lambda: mint("alice", aud="someone-else"),
    "no exp": lambda: unsigned("none", {"sub": "alice", "iss": ISSUER, "aud": AUDIENCE}),
    "alg none": lambda: unsigned("none", claims()),
    "HS256 keyed by the public key": lambda: unsigned("HS256", claims(), public_pem()),
    "HS256 with another secret": lambda: mint_hs256(
        "alice", secret="not-the-secret-0123456789abcdefghijkl"
    ),
    "signed by another key": lambda: mint("alice", key="b"),
    "not a JWT": lambda: "a.b.c",
    "sub not a user id": lambda: mint("\x00"),
}


@pytest.mark.parametrize("make", BAD_TOKENS.values(), ids=BAD_TOKENS.keys())
async def test_a_bad_token_is_401_and_claims_nothing(users_mode: Client, make: object) -> None:
    token = make()  # type: ignore[operator]
    answer = await users_mode.post(
        "/api/coupons/claim", json={"coupon_name": "T1"}, headers=bearer(token)
    )
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"] == "unauthorized"
    assert answer.headers["www-authenticate"] == "Bearer"
    coupon = (await users_mode.get("/api/coupons/T1")).json()
    assert coupon["claimed_by"] == []


async def test_the_claim_is_for_the_tokens_sub(users_mode: Client) -> None:
    alice = bearer(mint("alice"))
    taken = await users_mode.post("/api/coupons/claim", json={"coupon_name": "T1"}, headers=alice)
    assert (taken.status_code, taken.json()["user_id"]) == (200, "alice")
    named = {"coupon_name": "T2", "user_id": "alice"}
    assert (
        await users_mode.post("/api/coupons/claim", json=named, headers=alice)
    ).status_code == 200
    other = {"coupon_name": "T2", "user_id": "bob"}
    refused = await users_mode.post("/api/coupons/claim", json=other, headers=alice)
    assert (refused.status_code, refused.json()["error"]) == (403, "forbidden")
    nobody = await users_mode.post("/api/coupons/claim", json=other)
    assert (nobody.status_code, nobody.json()["error"]) == (401, "unauthorized")
    coupon = (await users_mode.get("/api/coupons/T2")).json()
    assert coupon["claimed_by"] == ["alice"]


async def test_hs256_claim_tokens_from_the_shops_backend_claim(users_mode: Client) -> None:
    token = bearer(mint_hs256("carol"))
    answer = await users_mode.post("/api/coupons/claim", json={"coupon_name": "T1"}, headers=token)
    assert (answer.status_code, answer.json()["user_id"]) == (200, "carol")


async def test_open_mode_keeps_the_original_validation(database: str, tmp_path: Path) -> None:
    settings = jwt_settings(key_file=write_public_key(tmp_path))
    async with in_process_client(database, **settings) as client:
        assert (
            await client.post("/api/coupons", json={"name": "O", "amount": 2})
        ).status_code == 201
        missing = await client.post(
            "/api/coupons/claim", json={"coupon_name": "O"}, headers=bearer(mint("alice"))
        )
        assert missing.status_code == 400
        anyone = await client.post(
            "/api/coupons/claim", json={"coupon_name": "O", "user_id": "zed"}
        )
        assert anyone.status_code == 200


async def test_an_unknown_kid_is_401_then_one_refresh_admits_it(database: str) -> None:
    with JwksServer([jwk("a", "key-a")]).running() as jwks:
        settings = {**jwt_settings(jwks_url=jwks.url), "JWT_JWKS_MIN_INTERVAL": "0.5"}
        async with in_process_client(database, CLAIM_AUTH="user", **settings) as client:
            assert (
                await client.post("/api/coupons", json={"name": "K", "amount": 9})
            ).status_code == 201
            known = bearer(mint("alice", kid="key-a"))
            assert (
                await client.post("/api/coupons/claim", json={"coupon_name": "K"}, headers=known)
            ).status_code == 200
            fetched = jwks.fetches
            rotated = bearer(mint("bob", key="b", kid="key-b"))
            for _ in range(20):  # a burst of unknown kids: one refresh per interval, not 20
                refused = await client.post(
                    "/api/coupons/claim", json={"coupon_name": "K"}, headers=rotated
                )
                assert refused.status_code == 401
            jwks.keys = [jwk("a", "key-a"), jwk("b", "key-b")]
            deadline = time.monotonic() + 60
            while True:
                answer = await client.post(
                    "/api/coupons/claim", json={"coupon_name": "K"}, headers=rotated
                )
                if answer.status_code != 401 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            assert answer.status_code == 200, answer.text
            # At most one fetch per half-second interval while the test waited,
            # never one per request (20 refused + the polls).
            assert jwks.fetches - fetched < 20
