"""A first `flashsale serve` with no database configured brings its own
PostgreSQL, whose data survives a restart."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from flashsale.bench.server import RunningServer
from tests.support.api import sale_fields
from tests.support.servers import serve


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Outside pytest's 0700 basetemp: the embedded server runs as its own user under root.
    folder = Path(tempfile.mkdtemp(prefix="flashsale-data-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def serve_embedded(data_dir: Path, log_name: str) -> RunningServer:
    """No database named (None): serve starts the embedded one in ``data_dir``.
    The log sits there too: the server's working folder, which the embedded
    server's own account can enter."""
    return serve(None, data_dir / log_name, env={"FLASHSALE_DATA_DIR": str(data_dir)})


def stop(server: RunningServer) -> str:
    assert server.stop() == 0, server.log()
    return server.log()


def postgres_running_in(data_dir: Path) -> bool:
    found = subprocess.run(["pgrep", "-f", f"-D {data_dir}/pgdata"], capture_output=True)
    return found.returncode == 0


def test_serve_without_a_database_uses_an_embedded_one_that_keeps_its_data(
    data_dir: Path,
) -> None:
    first = serve_embedded(data_dir, "first.log")
    created = httpx.post(f"{first.base_url}/api/coupons", json={"name": "KEPT", "amount": 3})
    assert created.status_code == 201
    claimed = httpx.post(
        f"{first.base_url}/api/coupons/claim",
        json={"user_id": "u1", "coupon_name": "KEPT"},
    )
    assert claimed.status_code == 200
    output = stop(first)
    assert "embedded PostgreSQL" in output
    assert str(data_dir) in output
    assert not postgres_running_in(data_dir)

    second = serve_embedded(data_dir, "second.log")
    coupon = httpx.get(f"{second.base_url}/api/coupons/KEPT").json()
    stop(second)
    assert coupon == {
        "name": "KEPT",
        "amount": 3,
        "remaining_amount": 2,
        "claimed_by": ["u1"],
        **sale_fields(),
    }
