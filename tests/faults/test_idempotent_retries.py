"""Claims whose answers are lost to a stalled database (503 at the request
deadline while their batch goes on and commits), retried with their
Idempotency-Keys: every retry tells the committed truth, and the database
holds exactly one effect per key."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from tests.support.invariants import assert_invariants
from tests.support.load import create_coupon
from tests.support.locks import locked
from tests.support.servers import serve
from tests.support.traffic import session

CLAIMS = 80
STOCK = 50  # fewer than the claims: some committed answers are refusals


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]
    replayed: bool


async def keyed_claim(http: aiohttp.ClientSession, base_url: str, n: int) -> Reply:
    body = json.dumps({"user_id": f"user-{n}", "coupon_name": "STALL"})
    headers = {"Content-Type": "application/json", "Idempotency-Key": f"key-{n}"}
    async with http.post(f"{base_url}/api/coupons/claim", data=body, headers=headers) as response:
        return Reply(
            response.status,
            await response.json(content_type=None),
            response.headers.get("Idempotent-Replayed") == "true",
        )


async def stalled_claims(base_url: str, db: asyncpg.Connection[asyncpg.Record]) -> list[Reply]:
    """Every claim sent while a table lock holds the coupon, answered 503."""
    async with (
        locked(db, "LOCK TABLE coupons IN ACCESS EXCLUSIVE MODE"),
        session(CLAIMS) as http,
    ):
        return await asyncio.gather(*(keyed_claim(http, base_url, n) for n in range(CLAIMS)))


async def settled(db: asyncpg.Connection[asyncpg.Record]) -> dict[str, asyncpg.Record]:
    """The key rows once the batches that outlived their requests committed."""
    await asyncio.sleep(1.0)
    for _ in range(600):  # then until no other session is busy (60 s: a loaded machine)
        busy = await db.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND state <> 'idle' AND pid <> pg_backend_pid()"
        )
        if not busy:
            break
        await asyncio.sleep(0.1)
    rows = await db.fetch("SELECT key, outcome, claimed_at FROM idempotency_keys")
    return {client_key(row["key"]): row for row in rows}


def client_key(stored: str) -> str:
    """A stored key is its owner's digest, ':', then the client's key
    (http/idempotency.py owned_key): the client's key is after the first ':'."""
    return stored.partition(":")[2]


async def test_claims_cut_off_by_a_stall_retried_with_their_keys_tell_the_truth(
    database: str, db: asyncpg.Connection[asyncpg.Record], tmp_path: Path
) -> None:
    server = serve(
        database,
        tmp_path / "server.log",
        env={"DB_STATEMENT_TIMEOUT": "30", "REQUEST_TIMEOUT": "1.5", "DB_POOL_MAX": "2"},
    )
    try:
        await create_coupon(server.base_url, "STALL", STOCK)
        cut_off = await stalled_claims(server.base_url, db)
        assert {(r.status, r.body["error"]) for r in cut_off} == {(503, "service_unavailable")}
        stored = await settled(db)
        claimed = await db.fetch("SELECT user_id, claimed_at FROM claims")
        assert stored, "no batch outlived its requests: the test proves nothing"
        assert {k for k, row in stored.items() if row["outcome"] == "claimed"} == {
            f"key-{row['user_id'].removeprefix('user-')}" for row in claimed
        }
        async with session(CLAIMS) as http:
            retries = await asyncio.gather(
                *(keyed_claim(http, server.base_url, n) for n in range(CLAIMS))
            )
    finally:
        assert server.stop() == 0
    await assert_retries_tell_the_truth(db, stored, retries)
    await assert_invariants(db)


async def assert_retries_tell_the_truth(
    db: asyncpg.Connection[asyncpg.Record],
    stored: dict[str, asyncpg.Record],
    retries: list[Reply],
) -> None:
    claims = {row["user_id"]: row for row in await db.fetch("SELECT * FROM claims")}
    rows = await db.fetch("SELECT * FROM idempotency_keys")
    keys = {client_key(row["key"]): row for row in rows}
    assert len(keys) == CLAIMS  # every key stored once, with its one decision
    for n, reply in enumerate(retries):
        key, user = f"key-{n}", f"user-{n}"
        # A key committed during the stall is replayed; any other runs now.
        assert reply.replayed is (key in stored), (n, reply)
        assert (reply.status == 200) is (user in claims), (n, reply)
        assert (keys[key]["outcome"] == "claimed") is (user in claims), n
        if reply.status == 200:
            at = claims[user]["claimed_at"]
            assert reply.body["claimed_at"] == at.isoformat().replace("+00:00", "Z"), n
        else:
            assert (reply.status, reply.body["error"]) == (409, keys[key]["outcome"]), n
    assert len(claims) <= STOCK
