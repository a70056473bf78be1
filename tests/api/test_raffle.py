"""A raffle over HTTP (issue 27): creation, entries (202, one row each
however often and however concurrently sent), the draw the app runs by
itself at draw_at, what reads show, and the draw checked against the
public rule (draw_rule.py). draw_at "passes" by an operator's UPDATE of the
row (the CHECKs still hold), so no test waits for a clock."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from flashsale import draw_rule
from tests.support.api import Client, in_process_client

ADMIN = {"authorization": "Bearer ops-0123456789"}
BACKEND = {"authorization": "Bearer shop-0123456789"}


@pytest.fixture
async def shop(database: str) -> AsyncIterator[Client]:
    async with in_process_client(
        database,
        CLAIM_AUTH="backend",
        ADMIN_TOKEN="ops-0123456789",
        BACKEND_TOKEN="shop-0123456789",
        CLAIM_RATE="0",
    ) as client:
        yield client


def later(seconds: int = 3600) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


async def create_raffle(client: Client, name: str, amount: int, **fields: object) -> Any:
    body = {"name": name, "amount": amount, "allocation": "raffle", "draw_at": later(), **fields}
    created = await client.post("/api/coupons", json=body, headers=ADMIN)
    assert created.status_code == 201, created.text
    return created.json()


async def enter(client: Client, user: str, coupon: str, **headers: str) -> Any:
    return await client.post(
        "/api/coupons/claim",
        json={"user_id": user, "coupon_name": coupon},
        headers={**BACKEND, **headers},
    )


async def draw_now(db: asyncpg.Connection[Any], name: str) -> None:
    """draw_at passes (an operator's UPDATE: the same CHECKs hold)."""
    await db.execute(
        "UPDATE coupons SET draw_at = clock_timestamp(), starts_at = NULL WHERE name = $1", name
    )


async def drawn(client: Client, name: str) -> Any:
    """The coupon once the app's drawer has drawn it (bounded wait)."""
    for _ in range(400):
        body = (await client.get(f"/api/coupons/{name}")).json()
        if body["status"] == "drawn":
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"{name} was not drawn: {body}")


async def drawn_raffle(
    shop: Client, db: asyncpg.Connection[Any], amount: int, users: list[str], **fields: object
) -> tuple[list[Any], Any]:
    """Raffle R with ``users`` entered in turn, then drawn: the answers to
    their entries and the drawn coupon."""
    await create_raffle(shop, "R", amount, **fields)
    entries = [await enter(shop, user, "R") for user in users]
    await draw_now(db, "R")
    return entries, await drawn(shop, "R")


def draw_order_of(body: Any, users: list[str]) -> list[str]:
    """The users in the public rule's order for the coupon's published seed."""
    seed = bytes.fromhex(body["draw_seed"])
    by_digest = {draw_rule.entrant_digest(user): user for user in users}
    return [by_digest[d] for d in draw_rule.draw_order(seed, list(by_digest))]


async def test_a_raffle_is_refused_while_anyone_may_claim_as_anyone(client: Client) -> None:
    body = {"name": "R", "amount": 3, "allocation": "raffle", "draw_at": later()}
    refused = await client.post("/api/coupons", json=body)
    assert refused.status_code == 409
    assert refused.json()["error"] == "raffle_needs_identities"


@pytest.mark.parametrize(
    "fields",
    [
        {"allocation": "raffle"},
        {"allocation": "raffle", "draw_at": "2020-01-01T00:00:00Z"},
        {"allocation": "raffle", "draw_at": later(7200), "ends_at": later(3600)},
        {"allocation": "first_come", "draw_at": later()},
    ],
)
async def test_a_draw_at_missing_past_or_outside_the_window_is_400(
    shop: Client, fields: dict[str, object]
) -> None:
    refused = await shop.post(
        "/api/coupons", json={"name": "R", "amount": 3, **fields}, headers=ADMIN
    )
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"] == "invalid_draw_at"


async def test_a_new_raffle_commits_to_a_seed_it_does_not_show(shop: Client) -> None:
    created = await create_raffle(shop, "R", 3)
    assert created["allocation"] == "raffle"
    assert created["status"] == "entries_open"
    assert len(created["draw_commitment"]) == 64
    assert created["draw_seed"] is None
    assert created["entries"] == 0
    read = (await shop.get("/api/coupons/R")).json()
    assert read["draw_commitment"] == created["draw_commitment"]
    assert read["draw_seed"] is None


async def test_entering_answers_202_and_makes_one_entry_however_often_sent(
    shop: Client, db: asyncpg.Connection[Any]
) -> None:
    created = await create_raffle(shop, "R", 3)
    answers = await asyncio.gather(*(enter(shop, f"u{n % 20}", "R") for n in range(200)))
    assert {a.status_code for a in answers} == {202}
    first = answers[0].json()
    assert first["message"] == "entered the raffle"
    assert datetime.fromisoformat(first["draw_at"]) == datetime.fromisoformat(created["draw_at"])
    assert await db.fetchval("SELECT count(*) FROM raffle_entries") == 20
    assert (await shop.get("/api/coupons/R")).json()["entries"] == 20
    assert await db.fetchval("SELECT count(*) FROM claims") == 0
    mine = await shop.get("/api/coupons/R/claims/u1", headers=BACKEND)
    assert mine.json() == {"user_id": "u1", "coupon_name": "R", "status": "entered", "place": None}
    assert (await shop.get("/api/coupons/R/claims/nobody", headers=BACKEND)).status_code == 404
    page = (await shop.get("/api/coupons/R/entries?limit=15")).json()
    rest = (await shop.get(f"/api/coupons/R/entries?after={page['next']}")).json()
    listed = [e["entrant"] for e in page["entries"] + rest["entries"]]
    digests = sorted(hashlib.sha256(f"u{n}".encode()).hexdigest() for n in range(20))
    assert (listed, rest["next"]) == (digests, None)  # by entrant, before the draw
    assert {e["place"] for e in page["entries"] + rest["entries"]} == {None}
    for query in ("after=u1", "limit=0", "limit=1001"):  # the cursor's form, the page's bound
        bad = await shop.get(f"/api/coupons/R/entries?{query}")
        assert (bad.status_code, bad.json()["error"]) == (400, "invalid_request")
    assert (await shop.get("/api/coupons/NOPE/entries")).status_code == 404


async def test_an_entry_under_an_idempotency_key_is_kept_and_replayed(
    shop: Client, db: asyncpg.Connection[Any]
) -> None:
    await create_raffle(shop, "R", 3)
    answers = await asyncio.gather(
        *(enter(shop, "alice", "R", **{"idempotency-key": "k-1"}) for _ in range(30))
    )
    assert {a.status_code for a in answers} == {202}
    assert len({a.content for a in answers}) == 1
    assert await db.fetchval("SELECT count(*) FROM raffle_entries") == 1


async def test_the_draw_gives_amount_claims_in_the_public_rules_order(
    shop: Client, db: asyncpg.Connection[Any]
) -> None:
    users = [f"user-{n}" for n in range(25)]
    entries, body = await drawn_raffle(shop, db, 3, users, hold_seconds=600)
    assert {entry.status_code for entry in entries} == {202}
    assert draw_rule.commitment(bytes.fromhex(body["draw_seed"])) == body["draw_commitment"]
    assert (body["entries"], body["draw_winners"], body["waitlisted"]) == (25, 3, 22)
    order = draw_order_of(body, users)
    claimed = await db.fetch("SELECT user_id, expires_at FROM claims ORDER BY user_id")
    assert sorted(row["user_id"] for row in claimed) == sorted(order[:3])
    assert all(row["expires_at"] is not None for row in claimed)
    page = (await shop.get("/api/coupons/R/entries?limit=10")).json()
    assert [e["place"] for e in page["entries"]] == list(range(1, 11))
    assert [e["entrant"] for e in page["entries"]] == [
        hashlib.sha256(u.encode()).hexdigest() for u in order[:10]
    ]
    rest = (await shop.get(f"/api/coupons/R/entries?limit=1000&after={page['next']}")).json()
    assert [e["place"] for e in rest["entries"]] == list(range(11, 26))
    assert rest["next"] is None
    fourth = await shop.get(f"/api/coupons/R/claims/{order[3]}", headers=BACKEND)
    assert fourth.json() == {
        "user_id": order[3],
        "coupon_name": "R",
        "status": "waitlisted",
        "place": 4,
    }
    winner = await shop.get(f"/api/coupons/R/claims/{order[0]}", headers=BACKEND)
    assert winner.json()["status"] == "held"
    late = await enter(shop, "latecomer", "R")
    assert (late.status_code, late.json()["error"]) == (409, "raffle_drawn")
    again = await enter(shop, order[0], "R")
    assert (again.status_code, again.json()["error"]) == (409, "already_claimed")
    events = await db.fetch("SELECT type, count(*) AS n FROM events GROUP BY type")
    counts = {row["type"]: row["n"] for row in events}
    assert (counts["claimed"], counts["waitlisted"], counts["raffle_drawn"]) == (3, 22, 1)


async def test_a_released_hold_goes_to_the_next_waitlisted_user(
    shop: Client, db: asyncpg.Connection[Any]
) -> None:
    users = [f"user-{n}" for n in range(6)]
    _, body = await drawn_raffle(shop, db, 2, users, hold_seconds=600)
    order = draw_order_of(body, users)
    released = await shop.delete(f"/api/coupons/R/claims/{order[0]}", headers=ADMIN)
    assert released.status_code == 204, released.text
    holders = await db.fetch("SELECT user_id FROM claims ORDER BY user_id")
    assert [row["user_id"] for row in holders] == sorted([order[1], order[2]])
    promoted = await db.fetchval(
        "SELECT data->>'reason' FROM events WHERE type = 'claimed' AND user_id = $1", order[2]
    )
    assert promoted == "waitlist_promoted"
    assert (await shop.get("/api/coupons/R")).json()["waitlisted"] == 3


async def test_allocation_and_draw_at_change_until_the_first_entry(shop: Client) -> None:
    created = await shop.post("/api/coupons", json={"name": "R", "amount": 3}, headers=ADMIN)
    assert created.json()["draw_commitment"] is None
    alone = await shop.patch("/api/coupons/R", json={"draw_at": later()}, headers=ADMIN)
    assert (alone.status_code, alone.json()["error"]) == (400, "invalid_draw_at")
    to_raffle = {"allocation": "raffle", "draw_at": later()}
    changed = await shop.patch("/api/coupons/R", json=to_raffle, headers=ADMIN)
    assert changed.status_code == 200, changed.text
    assert (changed.json()["allocation"], changed.json()["status"]) == ("raffle", "entries_open")
    commitment = changed.json()["draw_commitment"]
    moved = await shop.patch("/api/coupons/R", json={"draw_at": later(60)}, headers=ADMIN)
    assert moved.json()["draw_commitment"] == commitment  # the seed is kept
    past = await shop.patch(
        "/api/coupons/R", json={"draw_at": "2020-01-01T00:00:00Z"}, headers=ADMIN
    )
    assert (past.status_code, past.json()["error"]) == (400, "invalid_draw_at")
    assert (await enter(shop, "alice", "R")).status_code == 202
    fixed = await shop.patch("/api/coupons/R", json={"draw_at": later(120)}, headers=ADMIN)
    assert (fixed.status_code, fixed.json()["error"]) == (409, "raffle_entries_exist")
    restocked = await shop.patch("/api/coupons/R", json={"amount": 5}, headers=ADMIN)
    assert restocked.json()["amount"] == 5


async def test_a_restock_after_the_draw_goes_down_the_waitlist(
    shop: Client, db: asyncpg.Connection[Any]
) -> None:
    users = [f"user-{n}" for n in range(4)]
    _, body = await drawn_raffle(shop, db, 1, users)
    order = draw_order_of(body, users)
    restocked = await shop.patch("/api/coupons/R", json={"amount": 3}, headers=ADMIN)
    assert (restocked.json()["remaining_amount"], restocked.json()["waitlisted"]) == (0, 1)
    holders = await db.fetch("SELECT user_id FROM claims")
    assert sorted(row["user_id"] for row in holders) == sorted(order[:3])
    last = await shop.patch("/api/coupons/R", json={"amount": 5}, headers=ADMIN)
    assert (last.json()["remaining_amount"], last.json()["waitlisted"]) == (1, 0)
    # The waitlist is empty and a unit is left: first come, first served.
    assert (await enter(shop, "latecomer", "R")).status_code == 200
