"""``flashsale_held`` and bench/held.py: what a live server holds for its
clients (connections, requests in flight, streams) is read while a client
holds streams open, and reads back to nothing once it has gone: how
``flashsale bench --attack`` shows every connection and slot back. Every
wait is on a condition, never a clock."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from flashsale.bench.held import Held, read_held
from flashsale.bench.server import RunningServer

LIMIT = 120.0  # generous: a loaded 2-core machine; each wait ends when its condition holds
STREAMS = 3


def open_stream(base_url: str) -> socket.socket:
    """``GET /api/events/stream`` on a raw socket, read until its first event."""
    url = urlsplit(base_url)
    sock = socket.create_connection((url.hostname, url.port), timeout=LIMIT)
    sock.sendall(b"GET /api/events/stream HTTP/1.1\r\nHost: t\r\n\r\n")
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        assert chunk, received
        received += chunk
    assert received.startswith(b"HTTP/1.1 200"), received
    return sock


def held_until(base_url: str, holds: Callable[[Held], bool]) -> Held:
    since = time.monotonic()
    while True:
        held = read_held(base_url, since)
        if holds(held) or held.after_s > LIMIT:
            return held
        time.sleep(0.2)


def test_streams_held_are_read_and_read_back_to_nothing_once_gone(
    live_server: RunningServer,
) -> None:
    base = live_server.base_url
    streams = [open_stream(base) for _ in range(STREAMS)]
    try:
        held = held_until(base, lambda h: h.streams == STREAMS)
        assert held.streams == STREAMS
        assert held.requests >= STREAMS  # each stream is a request in flight
        assert held.connections >= STREAMS
        assert not held.back
    finally:
        for sock in streams:
            sock.close()
    back = held_until(base, lambda h: h.back)
    assert back.back, back.line()
    assert back.streams == back.spooled_bytes == back.pool_in_use == 0
    assert "every connection and slot back" in back.line()
