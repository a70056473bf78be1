"""``flashsale verify-draw`` against the real draw: a live server (two
workers, CLAIM_AUTH=backend) runs a raffle whose draw is a few seconds
ahead; entries through the backend's token; the test waits for the draw by
polling the coupon's status (never a fixed sleep); the command prints ok,
finds a participant's place, and a seed or commitment that is not the
published one gives a discrepancy."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest

from flashsale.bench.server import RunningServer
from flashsale.cli.draw_check import check_draw
from flashsale.cli.verify_draw import Bounds, Reader, read_published
from tests.support.raffles import (
    IDENTITIES,
    as_admin,
    create_raffle,
    enter,
    verify_draw,
    wait_for_the_draw,
)
from tests.support.servers import serve


@pytest.fixture(scope="module")
def raffle_server(
    module_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    log = tmp_path_factory.mktemp("raffle") / "server.log"
    server = serve(module_database, log, workers=2, env=IDENTITIES)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def drawn(raffle_server: RunningServer) -> dict[str, Any]:
    """A raffle of 4 units among 25 entrants, drawn."""
    with as_admin(raffle_server.base_url) as admin:
        create_raffle(admin, "DRAWN", 4, ahead_s=3)
        enter(raffle_server.base_url, "DRAWN", [f"entrant-{n}" for n in range(25)])
        return wait_for_the_draw(admin, "DRAWN")


def test_verify_draw_prints_ok_for_the_services_draw(
    raffle_server: RunningServer, drawn: dict[str, Any]
) -> None:
    assert (drawn["entries"], drawn["draw_winners"], drawn["waitlisted"]) == (25, 4, 21)
    done = verify_draw(raffle_server.base_url, "DRAWN")
    assert (done.returncode, done.stdout, done.stderr) == (0, "ok\n", "")


def test_a_participant_finds_their_place(
    raffle_server: RunningServer, drawn: dict[str, Any]
) -> None:
    winner = drawn["claimed_by"][0]
    done = verify_draw(raffle_server.base_url, "DRAWN", "--user", winner)
    assert done.returncode == 0, done.stdout
    assert f"user '{winner}': entrant " in done.stdout
    assert done.stdout.endswith(", place 1 of 25 (won)\nok\n")
    stranger = verify_draw(raffle_server.base_url, "DRAWN", "--user", "never-entered")
    assert stranger.returncode == 1
    assert "is not among the 25 entrants" in stranger.stdout


def test_a_seed_or_commitment_other_than_the_published_one_is_a_discrepancy(
    raffle_server: RunningServer, drawn: dict[str, Any]
) -> None:
    with httpx.Client(base_url=raffle_server.base_url, timeout=10) as client:
        published = read_published(Reader(client, Bounds(100, 1 << 20)), "DRAWN")
    assert check_draw(published).ok
    other_seed = replace(published, seed="00" * 32)
    assert any("committed draw_commitment" in d for d in check_draw(other_seed).discrepancies)
    other_commitment = replace(published, commitment="ff" * 32)
    assert check_draw(other_commitment).discrepancies == [
        f"sha256(draw_seed) is {drawn['draw_commitment']}, "
        f"but the committed draw_commitment is {'ff' * 32}"
    ]


def test_an_undrawn_raffle_exits_2_saying_when_it_will_be_drawn(
    raffle_server: RunningServer,
) -> None:
    with as_admin(raffle_server.base_url) as admin:
        create_raffle(admin, "LATER", 3, ahead_s=3600)
    done = verify_draw(raffle_server.base_url, "LATER")
    assert done.returncode == 2
    assert "is not drawn yet (status entries_open" in done.stderr


def test_a_first_come_coupon_is_not_a_raffle(raffle_server: RunningServer) -> None:
    with as_admin(raffle_server.base_url) as admin:
        assert admin.post("/api/coupons", json={"name": "PLAIN", "amount": 3}).status_code == 201
    done = verify_draw(raffle_server.base_url, "PLAIN")
    assert done.returncode == 2
    assert "is not a raffle (allocation first_come)" in done.stderr
