"""A first `flashsale serve` with no database configured brings its own
PostgreSQL, whose data survives a restart."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import free_port


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Outside pytest's 0700 basetemp: the embedded server runs as its own user under root.
    folder = Path(tempfile.mkdtemp(prefix="flashsale-data-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def serve(data_dir: Path, port: int) -> subprocess.Popen[str]:
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "DB_HOST", "TEST_DATABASE_URL")
    }
    environment |= {
        "FLASHSALE_DATA_DIR": str(data_dir),
        "APP_HOST": "127.0.0.1",
        "APP_PORT": str(port),
        "WEB_WORKERS": "1",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "flashsale", "serve"],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_healthy(port: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise AssertionError("server did not become healthy")


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=20)
    assert process.returncode == 0, output
    return output


def postgres_running_in(data_dir: Path) -> bool:
    found = subprocess.run(["pgrep", "-f", f"-D {data_dir}/pgdata"], capture_output=True)
    return found.returncode == 0


def test_serve_without_a_database_uses_an_embedded_one_that_keeps_its_data(
    data_dir: Path,
) -> None:
    port = free_port()
    first = serve(data_dir, port)
    wait_healthy(port, first)
    created = httpx.post(f"http://127.0.0.1:{port}/api/coupons", json={"name": "KEPT", "amount": 3})
    assert created.status_code == 201
    claimed = httpx.post(
        f"http://127.0.0.1:{port}/api/coupons/claim",
        json={"user_id": "u1", "coupon_name": "KEPT"},
    )
    assert claimed.status_code == 200
    output = stop(first)
    assert "embedded PostgreSQL" in output
    assert str(data_dir) in output
    assert not postgres_running_in(data_dir)

    second = serve(data_dir, port)
    wait_healthy(port, second)
    coupon = httpx.get(f"http://127.0.0.1:{port}/api/coupons/KEPT").json()
    stop(second)
    assert coupon == {"name": "KEPT", "amount": 3, "remaining_amount": 2, "claimed_by": ["u1"]}
