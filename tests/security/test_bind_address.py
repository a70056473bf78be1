"""APP_HOST decides which address the server listens on."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.support import free_port


def accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def test_the_server_listens_only_on_the_address_in_app_host(database: str, tmp_path: Path) -> None:
    port = free_port()
    # 127.0.0.2 is loopback too on Linux: bound there, 127.0.0.1 must refuse.
    env = {**os.environ, "DATABASE_URL": database, "APP_HOST": "127.0.0.2",
           "APP_PORT": str(port), "WEB_WORKERS": "1", "DB_POOL_MIN": "1"}  # fmt: skip
    with (tmp_path / "server.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "flashsale", "serve"], env=env, stdout=log, stderr=log
        )
    try:
        deadline = time.monotonic() + 30
        while not accepts("127.0.0.2", port):
            assert process.poll() is None, (tmp_path / "server.log").read_text()
            assert time.monotonic() < deadline, "the server never listened on 127.0.0.2"
            time.sleep(0.1)
        assert not accepts("127.0.0.1", port)
    finally:
        process.terminate()
        assert process.wait(timeout=15) == 0
