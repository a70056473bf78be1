"""The service's pools fit its PostgreSQL server: the embedded default is
sized for the configured workers, and a server too small for them is
refused at start-up with a message naming the settings to change."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.load import claim_all, create_coupon, outcomes
from tests.support.servers import serve


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Outside pytest's 0700 basetemp: the embedded server runs as its own user under root.
    folder = Path(tempfile.mkdtemp(prefix="flashsale-data-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


async def test_twelve_workers_on_the_embedded_default_take_a_rush_without_running_out(
    data_dir: Path,
) -> None:
    # Every worker's pool full from the start: 12 x 10 = 120 connections, more
    # than PostgreSQL's default max_connections of 100.
    server = serve(
        None,
        data_dir / "server.log",
        workers=12,
        env={"FLASHSALE_DATA_DIR": str(data_dir), "DB_POOL_MIN": "10", "DB_POOL_MAX": "10"},
        timeout=300,
    )
    try:
        await create_coupon(server.base_url, "RUSH", 300)
        replies = await claim_all([server.base_url], "RUSH", [f"u{n}" for n in range(1500)])
    finally:
        server.stop()
    assert outcomes(replies) == {"ok": 300, "409 sold_out": 1200}
    log = server.log()
    assert "raising the embedded server's max_connections to 140" in log
    assert "TooManyConnections" not in log


def test_a_server_too_small_for_the_pools_is_refused_with_what_to_change(database: str) -> None:
    started = subprocess.run(
        [sys.executable, "-m", "flashsale", "serve"],
        env={**os.environ, "DATABASE_URL": database, "WEB_WORKERS": "3", "DB_POOL_MAX": "400"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert started.returncode == 1, started.stdout + started.stderr
    assert "refusing to start: WEB_WORKERS=3 x DB_POOL_MAX=400 = 1200 connections" in (
        started.stderr
    )
    assert "max_connections" in started.stderr
    assert "Traceback" not in started.stderr
