"""``flashsale verify-draw`` against a tiny in-process fake of the published
JSON (httpx.MockTransport): its verdicts on a sound draw and on each kind of
tampering, paging, and its bounds. The fake is not the database; the draw the
service really makes is checked in tests/e2e/test_verify_draw_live.py."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from flashsale.cli import main
from flashsale.cli.verify_draw import Bounds, NothingToCheck, Reader, verify

SEED = bytes.fromhex("5e" * 32)
USERS = [f"user-{n}" for n in range(7)]
BOUNDS = Bounds(max_pages=100, max_bytes=1 << 20)


def _digest(user: str) -> bytes:
    return hashlib.sha256(user.encode()).digest()


def _order(seed: bytes, users: list[str]) -> list[bytes]:
    """The rule spelled out here again (not draw_rule's code), for the fake."""
    return sorted(
        (_digest(u) for u in users),
        key=lambda d: (hmac.new(seed, d, hashlib.sha256).digest(), d),
    )


@dataclass
class FakeRaffle:
    """What the API publishes for a drawn raffle of 3 units among USERS."""

    seed: bytes = SEED
    amount: int = 3
    waitlisted: int = 4
    claimed_by: list[str] = field(default_factory=list)
    places: list[tuple[str, int | None]] = field(default_factory=list)
    page_size: int = 3
    drawn: bool = True

    def __post_init__(self) -> None:
        order = _order(self.seed, USERS)
        self.places = [(d.hex(), place) for place, d in enumerate(order, 1)]
        by_digest = {_digest(u): u for u in USERS}
        self.claimed_by = [by_digest[d] for d in order[: self.amount]]

    def coupon(self) -> dict[str, Any]:
        return {
            "name": "RAFFLE", "amount": self.amount, "remaining_amount": 0,
            "claimed_by": self.claimed_by, "status": "drawn" if self.drawn else "entries_open",
            "allocation": "raffle", "draw_at": "2026-12-06T18:00:00Z",
            "draw_commitment": hashlib.sha256(SEED).hexdigest(),
            "draw_seed": self.seed.hex() if self.drawn else None, "entries": len(USERS),
            "draw_winners": self.amount, "waitlisted": self.waitlisted,
        }  # fmt: skip

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/coupons/RAFFLE":
            return httpx.Response(200, json=self.coupon())
        if request.url.path == "/api/coupons/RAFFLE/entries":
            start = int(request.url.params.get("after", "0"))
            page = self.places[start : start + self.page_size]
            end = start + self.page_size
            return httpx.Response(
                200,
                json={
                    "entries": [{"entrant": d, "place": p} for d, p in page],
                    "next": str(end) if end < len(self.places) else None,
                },
            )
        return httpx.Response(404, json={"error": "coupon_not_found", "message": "no"})


def run(
    fake: FakeRaffle,
    capsys: pytest.CaptureFixture[str],
    user: str | None = None,
    bounds: Bounds = BOUNDS,
    handler: Callable[[httpx.Request], httpx.Response] | None = None,
) -> tuple[int, str, str]:
    transport = httpx.MockTransport(handler or fake.handle)
    with httpx.Client(transport=transport, base_url="http://fake") as client:
        status = verify(client, "RAFFLE", user, bounds)
    out, err = capsys.readouterr()
    return status, out, err


def assert_discrepancy(
    fake: FakeRaffle, capsys: pytest.CaptureFixture[str], *lines: str, user: str | None = None
) -> str:
    """The check fails (exit 1) and says each of ``lines``; its output."""
    status, out, _ = run(fake, capsys, user=user)
    assert status == 1
    for line in lines:
        assert line in out
    return out


def test_a_sound_draw_prints_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(FakeRaffle(), capsys) == (0, "ok\n", "")


def test_a_participant_finds_their_place(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeRaffle()
    winner = fake.claimed_by[0]
    status, out, _ = run(fake, capsys, user=winner)
    assert status == 0
    assert out.splitlines() == [
        f"user {winner!r}: entrant {_digest(winner).hex()}, place 1 of 7 (won)",
        "ok",
    ]


def test_a_user_who_is_not_listed_is_a_discrepancy(capsys: pytest.CaptureFixture[str]) -> None:
    lines = ("user 'mallory'", "is not among the 7 entrants")
    assert_discrepancy(FakeRaffle(), capsys, *lines, user="mallory")


def test_a_seed_that_is_not_the_committed_one_is_a_discrepancy(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert_discrepancy(FakeRaffle(seed=bytes(32)), capsys, "but the committed draw_commitment is")


def test_places_the_rule_does_not_give_are_each_a_discrepancy(
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake = FakeRaffle()
    (d1, _), (d2, _) = fake.places[0], fake.places[1]
    fake.places[0], fake.places[1] = (d1, 2), (d2, 1)
    out = assert_discrepancy(
        fake, capsys, f"entrant {d1} is listed at place 2, the rule puts it at place 1"
    )
    assert out.count("discrepancy: ") == 2


def test_an_entrant_left_out_of_the_pages_is_a_discrepancy(
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake = FakeRaffle()
    del fake.places[-1]
    assert_discrepancy(fake, capsys, "the coupon says 7 entries, the entries pages list 6")


def test_a_claim_from_a_waitlisted_place_is_a_discrepancy(
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake = FakeRaffle()
    by_digest = {_digest(u).hex(): u for u in USERS}
    last = by_digest[fake.places[-1][0]]
    fake.claimed_by.append(last)
    place = f"{last!r} holds a claim from place 7, but places after 3 are still waitlisted"
    assert_discrepancy(fake, capsys, place)


def test_a_claimer_who_never_entered_is_a_discrepancy_while_anyone_waits(
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake = FakeRaffle()
    fake.claimed_by.append("gatecrasher")
    assert run(fake, capsys)[0] == 1
    fake.waitlisted = 0  # the waitlist ran out: first come for what is left
    assert run(fake, capsys)[0] == 0


def test_an_undrawn_raffle_has_nothing_to_check(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(FakeRaffle(drawn=False), capsys)
    assert (status, out) == (2, "")
    assert "is not drawn yet (status entries_open" in err


def test_a_missing_coupon_has_nothing_to_check(capsys: pytest.CaptureFixture[str]) -> None:
    missing = httpx.Response(404, json={"error": "coupon_not_found", "message": "no coupon"})
    status, _, err = run(FakeRaffle(), capsys, handler=lambda _: missing)
    assert status == 2
    assert "/api/coupons/RAFFLE answered 404: " in err


def test_more_pages_than_the_bound_stop_the_check(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(FakeRaffle(page_size=1), capsys, bounds=Bounds(3, 1 << 20))
    assert status == 2
    assert "more than 3 pages" in err


def test_an_answer_larger_than_the_bound_stops_the_check(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, _, err = run(FakeRaffle(), capsys, bounds=Bounds(100, 200))
    assert status == 2
    assert "answered more than 200 bytes" in err


def test_an_unreachable_service_exits_2_with_a_clear_message() -> None:
    done = CliRunner().invoke(main, ["verify-draw", "http://127.0.0.1:1", "RAFFLE"])
    assert done.exit_code == 2
    assert "cannot verify: cannot read /api/coupons/RAFFLE: ConnectError" in done.output


def test_the_token_is_sent_on_every_read(capsys: pytest.CaptureFixture[str]) -> None:
    fake, seen = FakeRaffle(), []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return fake.handle(request)

    transport = httpx.MockTransport(handler)
    headers = {"Authorization": "Bearer t0ken"}
    with httpx.Client(transport=transport, base_url="http://f", headers=headers) as client:
        assert verify(client, "RAFFLE", None, BOUNDS) == 0
    assert seen == ["Bearer t0ken"] * 4  # the coupon, then 3 pages of entries


def test_reading_longer_than_the_time_bound_stops_the_check() -> None:
    ticks = iter([0.0, 1.0, 9.0])  # at the start, then after each chunk read
    transport = httpx.MockTransport(FakeRaffle().handle)
    with httpx.Client(transport=transport, base_url="http://fake") as client:
        reader = Reader(client, Bounds(100, 1 << 20, max_seconds=5), clock=lambda: next(ticks))
        reader.get("/api/coupons/RAFFLE")  # within the bound
        with pytest.raises(NothingToCheck, match="reading took more than 5 s"):
            reader.get("/api/coupons/RAFFLE")
