"""Without ADMIN_TOKEN, coupon creation is open and the start-up log warns;
with it, the log neither warns nor shows the token."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.support.servers import served


async def test_without_admin_token_creation_is_open_and_the_start_up_log_warns(
    database: str, tmp_path: Path
) -> None:
    with served(database, tmp_path / "open.log", env={"ADMIN_TOKEN": ""}) as server:
        assert "ADMIN_TOKEN is not set" in server.log()


async def test_with_admin_token_the_start_up_log_does_not_warn_nor_show_it(
    database: str, tmp_path: Path
) -> None:
    with served(database, tmp_path / "closed.log", env={"ADMIN_TOKEN": "tok-SECRET-42"}) as server:
        log = server.log()
    assert "ADMIN_TOKEN is not set" not in log
    assert "tok-SECRET-42" not in log + server.log()


def test_beyond_loopback_the_start_up_log_says_whether_admin_routes_are_open(
    database: str, tmp_path: Path
) -> None:
    """The rule follows the listen address: 0.0.0.0 is beyond loopback."""
    beyond = "0.0.0.0"  # the admin routes are closed or explicitly opened
    with served(database, tmp_path / "closed.log", host=beyond, env={"ADMIN_TOKEN": ""}) as closed:
        refused = httpx.post(closed.base_url + "/api/coupons", json={"name": "X", "amount": 1})
        closed_log = closed.log()
    assert (refused.status_code, refused.json()["error"]) == (401, "unauthorized")
    assert "admin routes are closed" in closed_log
    with served(database, tmp_path / "open.log", host=beyond, env={"ADMIN_OPEN": "true"}) as opened:
        created = httpx.post(opened.base_url + "/api/coupons", json={"name": "X", "amount": 1})
        opened_log = opened.log()
    assert created.status_code == 201
    assert "ADMIN_OPEN=true" in opened_log
