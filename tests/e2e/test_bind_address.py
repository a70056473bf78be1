"""APP_HOST decides which address the server listens on; unset, loopback
(127.0.0.1) only: a server reachable from the network is a choice."""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlsplit

from tests.support.servers import served


def accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def test_the_server_listens_only_on_the_address_in_app_host(database: str, tmp_path: Path) -> None:
    # 127.0.0.2 is loopback too on Linux: bound there, 127.0.0.1 must refuse.
    with served(database, tmp_path / "server.log", host="127.0.0.2") as server:
        port = urlsplit(server.base_url).port
        assert port is not None
        assert accepts("127.0.0.2", port), "the server never listened on 127.0.0.2"
        assert not accepts("127.0.0.1", port)


def test_without_app_host_the_server_listens_on_127_0_0_1_only(
    database: str, tmp_path: Path
) -> None:
    # APP_HOST="" is unset for the settings; 127.0.0.2 (loopback too) must refuse.
    with served(database, tmp_path / "server.log", env={"APP_HOST": ""}) as server:
        port = urlsplit(server.base_url).port
        assert port is not None
        assert accepts("127.0.0.1", port)
        assert not accepts("127.0.0.2", port)
