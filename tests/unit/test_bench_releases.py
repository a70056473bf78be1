"""The bench's releasers (bench/returns.py): every release sent once, on
schedule, over keep-alive connections, and each response read whole
(status line, headers, body) before the connection's next request."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import ClassVar
from urllib.parse import unquote

import pytest

from flashsale.bench.returns import _status, release_evenly
from tests.support.stub_http import QuietHandler


class _Shop(QuietHandler):
    """204 for a held user, 404 with a JSON body for any other."""

    protocol_version = "HTTP/1.1"  # keep-alive, as Granian serves
    held: ClassVar[set[str]] = {"a b", "c/d", "e"}
    seen: ClassVar[list[tuple[float, str]]] = []

    def do_DELETE(self) -> None:
        user = unquote(self.path.rsplit("/", 1)[1])
        self.seen.append((time.monotonic(), user))
        if user in self.held:
            self.send_response(204)
            self.end_headers()
            return
        self.send_json(404, b'{"error":"claim_not_found","message":"no claim"}')


@pytest.fixture
def shop() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Shop)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Shop.seen.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_every_release_is_sent_once_and_only_204s_count(shop: str) -> None:
    users = ["a b", "nobody", "c/d", "e", "gone"]
    start = time.monotonic()
    assert release_evenly(shop, "C", users, 0.5) == 3
    assert sorted(user for _, user in _Shop.seen) == sorted(users)
    # Evenly over the half second: the last one no earlier than its slot.
    assert max(at for at, _ in _Shop.seen) - start >= 0.4 * 4 / 5


def test_a_response_is_complete_only_with_its_whole_body() -> None:
    head = b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 4\r\n\r\n"
    assert _status(bytearray(head[:20])) is None
    assert _status(bytearray(head + b"ab")) is None
    assert _status(bytearray(head + b"abcd")) == 404
    assert _status(bytearray(b"HTTP/1.1 204 No Content\r\nserver: granian\r\n\r\n")) == 204
