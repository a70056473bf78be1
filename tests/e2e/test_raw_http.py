"""Hostile HTTP that a well-behaved client library cannot even send, over raw
sockets against ``flashsale serve``: broken framing, bytes that are not
UTF-8, oversized bodies, and clients that send half a request and stall."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from flashsale.bench.server import RunningServer
from flashsale.server import HEADER_READ_TIMEOUT_MS
from tests.support.load import claim_all, create_coupon, outcomes
from tests.support.servers import served


@pytest.fixture(scope="module")
def server(
    module_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    with served(module_database, tmp_path_factory.mktemp("raw") / "server.log", workers=2) as live:
        yield live
    log = live.log()
    assert "Traceback" not in log
    assert "internal_error" not in log


def address(server: RunningServer) -> tuple[str, int]:
    parts = urlsplit(server.base_url)
    assert parts.hostname is not None
    assert parts.port is not None
    return parts.hostname, parts.port


def exchange(server: RunningServer, request: bytes, timeout: float = 3) -> bytes:
    """Send ``request`` as is; everything the server answers until it closes
    or goes quiet. A server that cuts the upload short is fine too."""
    with socket.create_connection(address(server), timeout=timeout) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        return read_all(sock)


def read_all(sock: socket.socket) -> bytes:
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return received


def status_of(response: bytes) -> int | None:
    """The first status code, or None when the server just closed."""
    if not response.startswith(b"HTTP/1."):
        return None
    return int(response.split(b" ", 2)[1])


def claim_request(body: bytes, extra_headers: bytes = b"") -> bytes:
    return (
        b"POST /api/coupons/claim HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        + extra_headers
        + b"Content-Length: "
        + str(len(body)).encode()
        + b"\r\nConnection: close\r\n\r\n"
        + body
    )


CLOSE = b"Connection: close\r\n"


def get(path: bytes, *headers: bytes) -> bytes:
    return b"GET " + path + b" HTTP/1.1\r\nHost: t\r\n" + b"".join(headers) + CLOSE + b"\r\n"


def post(*headers_then_body: bytes) -> bytes:
    *headers, body = headers_then_body
    head = b"POST /api/coupons/claim HTTP/1.1\r\nHost: t\r\n" + b"".join(headers)
    return head + b"\r\n" + body


BIG = b"a" * 100_000
RAW_REQUESTS: list[tuple[str, bytes]] = [
    ("garbage instead of a request line", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"),
    ("a request line without a version", b"GET /health\r\n\r\n"),
    ("a NUL in a header value", get(b"/health", b"X-A: a\x00b\r\n")),
    ("a header without a colon", get(b"/health", b"no colon here\r\n")),
    ("a 100 KB header", get(b"/health", b"X-Big: " + BIG + b"\r\n")),
    ("non-UTF-8 bytes in the path", get(b"/api/coupons/\xff\xfe")),
    ("a NUL in the path", get(b"/api/coupons/A\x00B")),
    ("an encoded NUL in the path", get(b"/api/coupons/A%00B")),
    ("a non-Latin-1 content type",
     claim_request(b'{"user_id":"u","coupon_name":"RAW"}', "Content-Type: \u00e9\r\n".encode())),
    ("invalid UTF-8 in the JSON", claim_request(b'{"user_id":"\xc3\x28","coupon_name":"RAW"}')),
    ("a non-numeric Content-Length", post(b"Content-Length: abc\r\n", b"{}")),
    ("a negative Content-Length", post(b"Content-Length: -5\r\n", b"{}")),
    ("two Content-Lengths", post(b"Content-Length: 2\r\n", b"Content-Length: 40\r\n", b"{}")),
    ("a body longer than its Content-Length",
     post(b"Content-Length: 2\r\n", b"{}GARBAGE / HTTP/1.1\r\n\r\n")),
    ("a bad chunk size", post(b"Transfer-Encoding: chunked\r\n", b"zz\r\n{}\r\n0\r\n\r\n")),
    ("an unknown method", b"BREW /api/coupons HTTP/1.1\r\nHost: t\r\n" + CLOSE + b"\r\n"),
    ("HTTP/1.0 without a Host", b"GET /health HTTP/1.0\r\n\r\n"),
    ("HTTP/2 preface on HTTP/1", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "request_bytes"), RAW_REQUESTS, ids=[r[0] for r in RAW_REQUESTS])
async def test_malformed_http_gets_a_4xx_or_a_closed_connection_never_a_500(
    server: RunningServer, what: str, request_bytes: bytes
) -> None:
    await create_coupon_once(server)
    response = await asyncio.to_thread(exchange, server, request_bytes)
    status = status_of(response)
    assert status is None or 200 <= status < 500, response[:300]
    for leak in (b"Traceback", b"asyncpg", b"SELECT", b"postgres"):
        assert leak not in response
    assert await healthy(server)


_created: set[str] = set()


async def create_coupon_once(server: RunningServer) -> None:
    if server.base_url not in _created:
        await create_coupon(server.base_url, "RAW", 1_000_000)
        _created.add(server.base_url)


async def healthy(server: RunningServer) -> bool:
    response = await asyncio.to_thread(
        exchange, server, b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    return status_of(response) == 200


def big_upload(server: RunningServer, head: bytes, body: bytes) -> int | None:
    """Stream a large body; the server may answer 413 before it is all sent."""
    with socket.create_connection(address(server), timeout=10) as sock:
        try:
            sock.sendall(head)
            for start in range(0, len(body), 1 << 20):
                sock.sendall(body[start : start + (1 << 20)])
        except (BrokenPipeError, ConnectionResetError):
            pass
        return status_of(read_all(sock))


async def test_a_10_mb_body_is_refused_with_413(server: RunningServer) -> None:
    body = b'{"user_id": "' + b"x" * 10_000_000 + b'", "coupon_name": "RAW"}'
    head = (
        b"POST /api/coupons/claim HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n"
    )
    assert await asyncio.to_thread(big_upload, server, head, body) == 413


async def test_a_10_mb_chunked_body_is_refused_with_413(server: RunningServer) -> None:
    chunk = b"x" * (1 << 20)
    body = (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * 10 + b"0\r\n\r\n"
    head = (
        b"POST /api/coupons/claim HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    assert await asyncio.to_thread(big_upload, server, head, body) == 413


def stall(server: RunningServer, partial: bytes, count: int) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(address(server), timeout=5)
        sock.sendall(partial)
        sockets.append(sock)
    return sockets


async def test_clients_that_send_half_a_request_and_stall_block_no_one(
    server: RunningServer,
) -> None:
    await create_coupon_once(server)
    half_headers = b"POST /api/coupons/claim HTTP/1.1\r\nHost: t\r\nContent-Ty"
    half_body = claim_request(b'{"user_id": "stalled", "coupon_name": "RAW"}')[:-20]
    stalled = stall(server, half_headers, 100) + stall(server, half_body, 100)
    try:
        replies = await claim_all([server.base_url], "RAW", [f"loris-{n}" for n in range(200)])
        assert outcomes(replies) == {"ok": 200}
        # Served while every stalled client still held its connection: not
        # after the server cut them off (it cuts a half-sent header after
        # HEADER_READ_TIMEOUT_MS, a half-sent body after BODY_TIMEOUT: both 10 s).
        assert all(still_open(sock) for sock in stalled), "claims waited for the stalls to end"
        # A half-sent header is cut off after the header read timeout.
        closed = await asyncio.to_thread(wait_closed, stalled[0], HEADER_READ_TIMEOUT_MS / 1000 + 5)
        assert closed, "a stalled header was never timed out"
        # A half-sent body is answered 408 and closed after BODY_TIMEOUT.
        closed = await asyncio.to_thread(wait_closed, stalled[100], 60)
        assert closed, "a stalled body was never timed out"
    finally:
        for sock in stalled:
            sock.close()


def still_open(sock: socket.socket) -> bool:
    """Whether the server has neither closed ``sock`` nor answered on it."""
    sock.setblocking(False)
    try:
        sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return True
    except ConnectionResetError:
        return False
    finally:
        sock.setblocking(True)
    return False


def wait_closed(sock: socket.socket, limit: float) -> bool:
    """Whether the server closes ``sock`` (or answers 408) within ``limit`` seconds."""
    sock.settimeout(limit)
    try:
        data = sock.recv(65536)
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return data == b"" or status_of(data) == 408
