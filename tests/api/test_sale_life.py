"""The sale's whole life through the API: windows, pause, restock and cut,
holds, release, redemption, one claim and a user's claims; each step judged
by what the client sees and by the database afterwards."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import asyncpg
import pytest

from tests.support.api import Client, claim_coupon, create_coupon, post_claim
from tests.support.holds import expire_holds
from tests.support.invariants import assert_invariants

if TYPE_CHECKING:
    Connection = asyncpg.Connection[Any]


def at(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def segment(user: str) -> str:
    """A user id as one path segment; '.' and '..' encoded too, or clients
    would resolve them as dot segments (RFC 3986 5.2.4)."""
    encoded = quote(user, safe="")
    return encoded.replace(".", "%2E") if set(user) == {"."} else encoded


def claim_path(coupon: str, user: str) -> str:
    return f"/api/coupons/{coupon}/claims/{segment(user)}"


async def test_a_coupon_is_created_with_a_window_and_holds(client: Client) -> None:
    starts, ends = at(3600), at(7200)
    response = await client.post(
        "/api/coupons",
        json={"name": "W", "amount": 5, "starts_at": starts, "ends_at": ends, "hold_seconds": 30},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert list(body)[:4] == ["name", "amount", "remaining_amount", "claimed_by"]
    assert body["status"] == "scheduled"
    assert datetime.fromisoformat(body["starts_at"]) == datetime.fromisoformat(starts)
    assert datetime.fromisoformat(body["ends_at"]) == datetime.fromisoformat(ends)
    assert (body["hold_seconds"], body["redeemed"]) == (30, 0)
    assert body["starts_at"].endswith("Z")


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"starts_at": "2030-01-02T00:00:00Z", "ends_at": "2030-01-01T00:00:00Z"}, "ends_at"),
        ({"ends_at": "2020-01-01T00:00:00Z"}, "ends_at"),
        ({"starts_at": "2030-01-01T00:00:00"}, "starts_at"),  # no offset
        ({"ends_at": "tomorrow"}, "ends_at"),
        ({"hold_seconds": 9}, "hold_seconds"),
        ({"hold_seconds": 86_401}, "hold_seconds"),
        ({"hold_seconds": 30.0}, "hold_seconds"),
        ({"amount": 2_147_483_648}, "amount"),
    ],
)
async def test_a_bad_window_or_hold_is_invalid_naming_the_field(
    client: Client, fields: dict[str, object], named: str
) -> None:
    response = await client.post("/api/coupons", json={"name": "BAD", "amount": 1, **fields})
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"
    assert named in response.json()["message"]
    assert (await client.get("/api/coupons/BAD")).status_code == 404


async def test_the_largest_32_bit_amount_is_accepted(client: Client) -> None:
    await create_coupon(client, "HUGE", 2_147_483_647)
    await claim_coupon(client, "u1", "HUGE")
    body = (await client.get("/api/coupons/HUGE")).json()
    assert body["remaining_amount"] == 2_147_483_646


async def test_a_claim_answers_with_its_times(client: Client) -> None:
    await create_coupon(client, "PLAIN", 5)
    plain = (await post_claim(client, "u1", "PLAIN")).json()
    assert plain["message"] == "coupon claimed"
    assert plain["claimed_at"].endswith("Z")
    assert plain["expires_at"] is None
    await client.post("/api/coupons", json={"name": "HELD", "amount": 5, "hold_seconds": 30})
    held = (await post_claim(client, "u1", "HELD")).json()
    claimed_at = datetime.fromisoformat(held["claimed_at"])
    assert datetime.fromisoformat(held["expires_at"]) - claimed_at == timedelta(seconds=30)


async def test_window_and_pause_refuse_claims_but_holders_hear_already_claimed(
    client: Client, db: Connection
) -> None:
    await client.post("/api/coupons", json={"name": "LATER", "amount": 5, "starts_at": at(600)})
    refused = await post_claim(client, "u1", "LATER")
    assert (refused.status_code, refused.json()["error"]) == (409, "not_started")

    await create_coupon(client, "P", 5)
    await claim_coupon(client, "holder", "P")
    paused = await client.patch("/api/coupons/P", json={"active": False})
    assert (paused.status_code, paused.json()["status"]) == (200, "paused")
    assert (await post_claim(client, "u2", "P")).json()["error"] == "paused"
    assert (await post_claim(client, "holder", "P")).json()["error"] == "already_claimed"
    resumed = await client.patch("/api/coupons/P", json={"active": True})
    assert resumed.json()["status"] == "active"
    assert (await post_claim(client, "u2", "P")).status_code == 200

    # ends_at in the past by the database clock, set by an operator.
    await db.execute("UPDATE coupons SET ends_at = now() WHERE name = 'P'")
    ended = await post_claim(client, "u3", "P")
    assert (ended.status_code, ended.json()["error"]) == (409, "sale_ended")
    await client.patch("/api/coupons/P", json={"active": False})
    assert (await client.get("/api/coupons/P")).json()["status"] == "ended"  # wins over paused
    assert (await post_claim(client, "u3", "P")).json()["error"] == "sale_ended"
    await assert_invariants(db)


async def test_status_order_scheduled_over_sold_out_and_paused_over_scheduled(
    client: Client, db: Connection
) -> None:
    await create_coupon(client, "ONE", 1)
    await claim_coupon(client, "u1", "ONE")
    assert (await client.get("/api/coupons/ONE")).json()["status"] == "sold_out"
    await client.patch("/api/coupons/ONE", json={"starts_at": at(600)})
    assert (await client.get("/api/coupons/ONE")).json()["status"] == "scheduled"
    await client.patch("/api/coupons/ONE", json={"active": False})
    assert (await client.get("/api/coupons/ONE")).json()["status"] == "paused"
    listed = (await client.get("/api/coupons")).json()["coupons"]
    assert [c["status"] for c in listed] == ["paused"]
    cleared = await client.patch("/api/coupons/ONE", json={"starts_at": None, "active": True})
    assert (cleared.json()["starts_at"], cleared.json()["status"]) == (None, "sold_out")


async def test_restock_and_cut_move_the_remaining_stock(client: Client, db: Connection) -> None:
    await create_coupon(client, "S", 3)
    for user in ("a", "b", "c"):
        await claim_coupon(client, user, "S")
    assert (await post_claim(client, "d", "S")).json()["error"] == "sold_out"
    restocked = (await client.patch("/api/coupons/S", json={"amount": 5})).json()
    assert (restocked["amount"], restocked["remaining_amount"]) == (5, 2)
    assert (await post_claim(client, "d", "S")).status_code == 200
    cut = await client.patch("/api/coupons/S", json={"amount": 4})
    assert (cut.json()["amount"], cut.json()["remaining_amount"]) == (4, 0)
    below = await client.patch("/api/coupons/S", json={"amount": 3})
    assert (below.status_code, below.json()["error"]) == (409, "amount_below_claimed")
    assert (await client.get("/api/coupons/S")).json()["amount"] == 4
    await assert_invariants(db)


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"amount": 0}, 400, "invalid_request"),
        ({"amount": True}, 400, "invalid_request"),
        ({"active": "no"}, 400, "invalid_request"),
        ({"hold_seconds": 5}, 400, "invalid_request"),
        ({"ends_at": "2020-01-01T00:00:00Z"}, 400, "invalid_request"),
        ({"starts_at": "2031-01-01T00:00:00Z"}, 400, "invalid_request"),  # after ends_at
    ],
)
async def test_a_bad_change_is_refused_and_changes_nothing(
    client: Client, body: dict[str, object], status: int, error: str
) -> None:
    await client.post(
        "/api/coupons", json={"name": "C", "amount": 2, "ends_at": "2030-01-01T00:00:00Z"}
    )
    response = await client.patch("/api/coupons/C", json=body)
    assert (response.status_code, response.json()["error"]) == (status, error), response.text
    coupon = (await client.get("/api/coupons/C")).json()
    assert (coupon["amount"], coupon["status"], coupon["starts_at"]) == (2, "active", None)


async def test_changing_an_unknown_coupon_is_not_found(client: Client) -> None:
    response = await client.patch("/api/coupons/NOPE", json={"amount": 3})
    assert (response.status_code, response.json()["error"]) == (404, "coupon_not_found")


async def test_one_claim_release_and_redeem(client: Client, db: Connection) -> None:
    await client.post("/api/coupons", json={"name": "H", "amount": 2, "hold_seconds": 30})
    await claim_coupon(client, "alice", "H")
    await claim_coupon(client, "bob", "H")
    one = (await client.get(claim_path("H", "alice"))).json()
    assert (one["user_id"], one["coupon_name"], one["status"]) == ("alice", "H", "held")
    assert one["redeemed_at"] is None

    redeemed = await client.post(claim_path("H", "alice") + "/redeem")
    assert redeemed.status_code == 200, redeemed.text
    assert redeemed.json()["status"] == "redeemed"
    assert redeemed.json()["redeemed_at"] is not None
    again = await client.post(claim_path("H", "alice") + "/redeem")
    assert (again.status_code, again.json()["error"]) == (409, "already_redeemed")
    undone = await client.delete(claim_path("H", "alice"))
    assert (undone.status_code, undone.json()["error"]) == (409, "already_redeemed")

    released = await client.delete(claim_path("H", "bob"))
    assert released.status_code == 204
    coupon = (await client.get("/api/coupons/H")).json()
    assert (coupon["remaining_amount"], coupon["claimed_by"], coupon["redeemed"]) == (
        1,
        ["alice"],
        1,
    )
    gone = await client.get(claim_path("H", "bob"))
    assert (gone.status_code, gone.json()["error"]) == (404, "claim_not_found")
    assert (await client.delete(claim_path("H", "bob"))).json()["error"] == "claim_not_found"
    assert (await client.post(claim_path("H", "bob") + "/redeem")).status_code == 404
    assert (await post_claim(client, "bob", "H")).status_code == 200  # may claim again
    history = await db.fetch("SELECT user_id, reason FROM claim_history")
    assert [tuple(row) for row in history] == [("bob", "released")]
    await assert_invariants(db)


async def test_unknown_coupon_or_claim_on_the_claim_routes(client: Client) -> None:
    for method, suffix in [("GET", ""), ("DELETE", ""), ("POST", "/redeem")]:
        missing = await client.request(method, claim_path("NOPE", "u") + suffix)
        assert (missing.status_code, missing.json()["error"]) == (404, "coupon_not_found")
    await create_coupon(client, "E", 1)
    for method, suffix in [("GET", ""), ("DELETE", ""), ("POST", "/redeem")]:
        missing = await client.request(method, claim_path("E", "u") + suffix)
        assert (missing.status_code, missing.json()["error"]) == (404, "claim_not_found")
        control = await client.request(method, "/api/coupons/E/claims/%01" + suffix)
        assert control.json()["error"] == "claim_not_found"


async def test_an_expired_hold_is_gone_before_and_after_the_sweep(
    client: Client, db: Connection
) -> None:
    await client.post("/api/coupons", json={"name": "X", "amount": 1, "hold_seconds": 10})
    await claim_coupon(client, "early", "X")
    assert (await post_claim(client, "late", "X")).json()["error"] == "sold_out"
    await expire_holds(db, "X", ["early"])
    # Before any sweep: the reads and the claim path already treat it as gone.
    coupon = (await client.get("/api/coupons/X")).json()
    assert (coupon["remaining_amount"], coupon["claimed_by"], coupon["status"]) == (
        1,
        [],
        "active",
    )
    assert (await client.get(claim_path("X", "early"))).status_code == 404
    assert (await client.post(claim_path("X", "early") + "/redeem")).status_code == 404
    assert (await post_claim(client, "late", "X")).status_code == 200
    history = await db.fetch("SELECT user_id, reason FROM claim_history")
    assert [tuple(row) for row in history] == [("early", "expired")]
    await assert_invariants(db)


async def test_the_sweeper_returns_a_due_hold_with_no_request(
    client: Client, db: Connection
) -> None:
    await client.post("/api/coupons", json={"name": "Y", "amount": 3, "hold_seconds": 10})
    await claim_coupon(client, "u1", "Y")
    await expire_holds(db, "Y", ["u1"])
    for _ in range(40):  # up to 2 s
        if await db.fetchval("SELECT remaining_amount FROM coupons WHERE name = 'Y'") == 3:
            break
        await asyncio.sleep(0.05)
    assert await db.fetchval("SELECT remaining_amount FROM coupons WHERE name = 'Y'") == 3
    assert await db.fetchval("SELECT count(*) FROM claims") == 0
    assert await db.fetchval("SELECT reason FROM claim_history") == "expired"
    await assert_invariants(db)


async def test_an_operator_insert_without_coupon_id_takes_a_unit(
    client: Client, db: Connection
) -> None:
    await client.post("/api/coupons", json={"name": "OPS", "amount": 2, "hold_seconds": 60})
    await db.execute("INSERT INTO claims (user_id, coupon_name) VALUES ('by-hand', 'OPS')")
    coupon = (await client.get("/api/coupons/OPS")).json()
    assert (coupon["remaining_amount"], coupon["claimed_by"]) == (1, ["by-hand"])
    assert (await client.get(claim_path("OPS", "by-hand"))).json()["expires_at"] is not None
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await db.execute("INSERT INTO claims (user_id, coupon_name) VALUES ('x', 'NOPE')")
    await db.execute("DELETE FROM claims WHERE user_id = 'by-hand'")
    assert await db.fetchval("SELECT reason FROM claim_history") == "deleted"
    await assert_invariants(db)


ODD_USERS = ["with space", "a/b", "100%", "what?", "#hash", "ünïcødé 🎟", "a%2Fb", "/", ".."]


@pytest.mark.parametrize("user", ODD_USERS)
async def test_every_valid_user_id_round_trips_through_the_paths(
    client: Client, db: Connection, user: str
) -> None:
    await client.post("/api/coupons", json={"name": "ODD", "amount": 3, "hold_seconds": 30})
    await client.post("/api/coupons", json={"name": "ODD2", "amount": 3})
    await claim_coupon(client, user, "ODD")
    await claim_coupon(client, user, "ODD2")
    read = await client.get(claim_path("ODD", user))
    assert (read.status_code, read.json()["user_id"]) == (200, user), read.text
    listed = await client.get(f"/api/users/{segment(user)}/claims")
    assert [(c["user_id"], c["coupon_name"]) for c in listed.json()["claims"]] == [
        (user, "ODD2"),
        (user, "ODD"),
    ]
    redeemed = await client.post(claim_path("ODD2", user) + "/redeem")
    assert redeemed.json()["user_id"] == user
    assert (await client.delete(claim_path("ODD", user))).status_code == 204
    assert await db.fetchval("SELECT user_id FROM claim_history") == user


async def test_a_users_claims_page_newest_first(client: Client, db: Connection) -> None:
    for i in range(5):
        await create_coupon(client, f"K{i}", 2)
        await claim_coupon(client, "pat", f"K{i}")
    await claim_coupon(client, "someone-else", "K0")
    response = await client.get("/api/users/pat/claims", params={"limit": "3"})
    assert response.status_code == 200, response.text
    first = response.json()
    assert [c["coupon_name"] for c in first["claims"]] == ["K4", "K3", "K2"]
    assert first["claims"][0]["status"] == "held"
    second = (await client.get("/api/users/pat/claims", params={"after": first["next"]})).json()
    assert [c["coupon_name"] for c in second["claims"]] == ["K1", "K0"]
    assert second["next"] is None
    assert (await client.get("/api/users/nobody/claims")).json() == {"claims": [], "next": None}
    bad = await client.get("/api/users/pat/claims", params={"after": "!!"})
    assert bad.status_code == 400
    assert (await client.get("/api/users/%20/claims")).status_code == 400
