"""Without ADMIN_TOKEN, coupon creation is open and the start-up log warns;
with it, the log neither warns nor shows the token."""

from __future__ import annotations

from pathlib import Path

from tests.support.servers import serve


async def test_without_admin_token_creation_is_open_and_the_start_up_log_warns(
    database: str, tmp_path: Path
) -> None:
    server = serve(database, tmp_path / "open.log", env={"ADMIN_TOKEN": ""})
    try:
        assert "ADMIN_TOKEN is not set" in server.log()
    finally:
        assert server.stop() == 0


async def test_with_admin_token_the_start_up_log_does_not_warn_nor_show_it(
    database: str, tmp_path: Path
) -> None:
    server = serve(database, tmp_path / "closed.log", env={"ADMIN_TOKEN": "tok-SECRET-42"})
    try:
        log = server.log()
    finally:
        assert server.stop() == 0
    assert "ADMIN_TOKEN is not set" not in log
    assert "tok-SECRET-42" not in log + server.log()
