"""The bench's stock returns while claims go on: half the seeded claims
expire at random over the run (the sweepers and the claim batches take them
back), half are released one by one, evenly over the run, through the
service's own route (DELETE /api/coupons/{name}/claims/{user}), as a shop's
backend releases the coupon of a cancelled order. A release is answered
once the coupon's next claim batch commits, so RELEASERS connections send
them on schedule whatever their latency.

The releasers are a load generator, and share the two cores with the server
and PostgreSQL as wrk does: one thread, keep-alive sockets under one
selector, prepared request bytes, and of each response only the status
line and the body's length: less CPU per release than http.client in
threads (its header parsing, the threads) or asyncio streams, and so more
CPU left to the server it measures (docs/benchmarks.md)."""

from __future__ import annotations

import asyncio
import selectors
import socket
import time
from collections import deque
from urllib.parse import quote, urlsplit

from flashsale.storage.admin import schedule_expiries

RELEASERS = 16
LATE_S = 1.0  # nothing is sent this long after the schedule ends: the load stopped
GIVE_UP_S = 10.0  # a response this late after the schedule's end is not waited for
_CONTENT_LENGTH = b"\r\ncontent-length:"


def return_stock_during(
    database_url: str, base_url: str, coupon: str, *, seeded: list[str], seconds: float
) -> int:
    """How many of the first half of ``seeded`` were released (204)."""
    half = len(seeded) // 2
    asyncio.run(schedule_expiries(database_url, coupon, seeded[half:], seconds))
    return release_evenly(base_url, coupon, seeded[:half], seconds)


def release_evenly(base_url: str, coupon: str, users: list[str], seconds: float) -> int:
    """Release ``users`` evenly over ``seconds``; how many answered 204."""
    address = urlsplit(base_url)
    host, port = address.hostname or "127.0.0.1", address.port or 80
    prefix = f"DELETE /api/coupons/{quote(coupon, safe='')}/claims/".encode()
    suffix = f" HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    requests = deque(prefix + quote(user, safe="").encode() + suffix for user in users)
    start = time.monotonic()
    due = deque(start + i * seconds / max(len(users), 1) for i in range(len(users)))
    sockets = [socket.create_connection((host, port)) for _ in range(min(RELEASERS, len(users)))]
    try:
        return _Releases(sockets, start + seconds).run(requests, due)
    finally:
        for sock in sockets:
            sock.close()


class _Releases:
    """Requests sent on idle sockets when due, responses read as they come."""

    def __init__(self, sockets: list[socket.socket], end: float) -> None:
        self._idle = deque(sockets)
        self._waiting: dict[socket.socket, bytearray] = {}
        self._selector = selectors.DefaultSelector()
        for sock in sockets:
            self._selector.register(sock, selectors.EVENT_READ)
        self._end = end
        self.released = 0

    def run(self, requests: deque[bytes], due: deque[float]) -> int:
        while (requests or self._waiting) and time.monotonic() < self._end + GIVE_UP_S:
            now = time.monotonic()
            if now - self._end > LATE_S:  # bounded: stops with the load
                requests.clear()
            while requests and due[0] <= now and self._idle:
                due.popleft()
                sock = self._idle.popleft()
                sock.sendall(requests.popleft())
                self._waiting[sock] = bytearray()
            wait = due[0] - now if requests and self._idle else 0.5
            for key, _ in self._selector.select(max(wait, 0.0)):
                self._read(key.fileobj)  # type: ignore[arg-type]
        self._selector.close()
        return self.released

    def _read(self, sock: socket.socket) -> None:
        buffer = self._waiting[sock]
        chunk = sock.recv(65536)
        if not chunk:  # closed by the server: its release goes unanswered, the others go on
            self._selector.unregister(sock)
            del self._waiting[sock]
            return
        buffer += chunk
        status = _status(buffer)
        if status is not None:
            self.released += status == 204
            del self._waiting[sock]
            self._idle.append(sock)


def _status(response: bytearray) -> int | None:
    """The status of a complete response (headers and body), else None."""
    head_end = response.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    head = bytes(response[:head_end]).lower()
    length = 0
    if (at := head.find(_CONTENT_LENGTH)) >= 0:
        line_end = head.find(b"\r\n", at + 2)
        length = int(head[at + len(_CONTENT_LENGTH) : line_end if line_end >= 0 else None])
    if len(response) < head_end + 4 + length:
        return None
    return int(response[9:12])
