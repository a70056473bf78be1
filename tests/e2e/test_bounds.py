"""Every bound on a client inside the service (http/bounds.py, http/spool.py,
http/streams.py), shown against ``flashsale serve`` over raw sockets: a
stalled body is cut with 408 and its connection closed; stalled readers of
a big coupon hold no connection or slot, leave small reads answered and are
cut off; the stream cap answers 503; idle streams end and resume with
Last-Event-ID; past WORKER_MAX_REQUESTS a worker cuts the oldest stalled
body, or answers 503 when every place is answering; HTTP/2 with
prior knowledge is not served. Each cut and refusal is counted under its
reason in /metrics (``flashsale_requests_cut_total``): every test compares
the counts before and after. Every wait is on a condition, never a clock."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from flashsale.bench.server import RunningServer
from flashsale.storage.admin import seed_coupon
from tests.support.cuts import moved, read_cuts
from tests.support.load import claim_all, create_coupon
from tests.support.servers import served
from tests.support.sessions import wait_until_idle

HUGE = "HUGE"
HUGE_CLAIMS = 1_000_000  # ~14 MB of JSON: far more than the socket buffers hold
# Generous: a loaded 2-core machine; each wait ends as soon as its condition holds.
LIMIT = 120.0

# Short deadlines so the waits are short; the cut-off reader's rate is set
# high so that a reader that reads nothing misses it within seconds.
BOUNDED = {
    "BODY_TIMEOUT": "2",
    "SEND_TIMEOUT": "5",
    "MIN_SEND_RATE": "1000000",
    "WORKER_MAX_STREAMS": "2",
}
# A rate no reader reaches: past SEND_TIMEOUT's grace a steady reader is too slow.
CROWDED = {
    "WORKER_MAX_REQUESTS": "3",
    "BODY_TIMEOUT": "3",
    "STREAM_IDLE_TIMEOUT": "2",
    "SEND_TIMEOUT": "6",
    "MIN_SEND_RATE": "1000000000",
}


@pytest.fixture(scope="module")
async def huge_database(module_database: str) -> str:
    await seed_coupon(module_database, HUGE, HUGE_CLAIMS, claims=HUGE_CLAIMS)
    await seed_coupon(module_database, "SMALL", 10, claims=3)
    return module_database


@pytest.fixture(scope="module")
def server(huge_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    log = tmp_path_factory.mktemp("bounds") / "server.log"
    with served(huge_database, log, workers=1, env=BOUNDED) as live:
        yield live
    assert "Traceback" not in live.log()


@pytest.fixture(scope="module")
def crowded(
    huge_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    log = tmp_path_factory.mktemp("crowded") / "server.log"
    with served(huge_database, log, workers=1, env=CROWDED) as live:
        yield live


def address(server: RunningServer) -> tuple[str, int]:
    parts = urlsplit(server.base_url)
    assert parts.hostname is not None
    assert parts.port is not None
    return parts.hostname, parts.port


def connect(server: RunningServer, request: bytes) -> socket.socket:
    sock = socket.create_connection(address(server), timeout=10)
    sock.sendall(request)
    return sock


def read_to_end(sock: socket.socket, limit: float = LIMIT) -> bytes | None:
    """Everything until the server closes; None if it is still open after ``limit``."""
    sock.settimeout(limit)
    received = bytearray()
    try:
        while chunk := sock.recv(1 << 20):
            received += chunk
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return bytes(received)


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def half_claim(length: int = 50) -> bytes:
    return (
        b"POST /api/coupons/claim HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(length).encode() + b"\r\n\r\n{"
    )


async def cuts(server: RunningServer) -> dict[str, int]:
    """The cut counts, once a scrape is let in (a full worker refuses it:
    only the tests that fill a worker count those refusals)."""
    for _ in range(int(LIMIT / 0.1)):
        if (found := await read_cuts(server.base_url)) is not None:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError("/metrics was refused throughout")


async def test_a_stalled_body_is_answered_408_and_its_connection_closed(
    server: RunningServer,
) -> None:
    before = await cuts(server)
    sock = connect(server, half_claim())
    with sock:
        response = await asyncio.to_thread(read_to_end, sock)
    assert response is not None, "a half-sent body was never cut off"
    assert status_of(response) == 408
    body = json.loads(response.split(b"\r\n\r\n", 1)[1])
    assert body["error"] == "request_timeout"
    assert b"connection: close" in response.lower()
    assert moved(before, await cuts(server)) == {"body_timeout": 1}


async def test_http2_with_prior_knowledge_is_not_served(server: RunningServer) -> None:
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    empty_settings = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # length 0, type SETTINGS
    sock = connect(server, preface + empty_settings)
    with sock:
        response = await asyncio.to_thread(read_to_end, sock)
    assert response is not None
    # An HTTP/2 server answers with its own SETTINGS frame (type 0x04 at byte 3).
    assert response == b"" or response.startswith(b"HTTP/1.1 4"), response[:40]


READS = 'flashsale_http_request_duration_seconds_count{method="GET",route="/api/coupons/{name}"'


async def coupon_reads(server: RunningServer) -> int:
    """Coupon reads the server has finished, whatever their status."""
    async with httpx.AsyncClient(timeout=30) as client:
        text = (await client.get(f"{server.base_url}/metrics")).text
    return sum(
        int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines() if line.startswith(READS)
    )


async def wait_for_reads(server: RunningServer, count: int) -> bool:
    for _ in range(int(LIMIT / 0.2)):
        if await coupon_reads(server) >= count:
            return True
        await asyncio.sleep(0.2)
    return False


async def test_stalled_readers_of_a_big_coupon_hold_nothing_and_are_cut_off(
    server: RunningServer, huge_database: str
) -> None:
    get_huge = b"GET /api/coupons/HUGE HTTP/1.1\r\nHost: t\r\n\r\n"
    before = await coupon_reads(server)
    cut_before = await cuts(server)
    stalled = [connect(server, get_huge) for _ in range(10)]  # never read
    try:
        # Once their bodies are spooled, the readers hold no database session
        # (nor a large-read slot): every small read is answered.
        assert await wait_until_idle(huge_database, polls=int(LIMIT / 0.1)) == []
        async with httpx.AsyncClient(timeout=30) as client:
            for _ in range(20):
                small = await client.get(f"{server.base_url}/api/coupons/SMALL")
                assert small.status_code == 200, small.text
                assert len(small.json()["claimed_by"]) == 3
        # Each stalled reader is either cut off mid-body (below MIN_SEND_RATE)
        # or was told 503 when the large-read slots were all busy spooling:
        # either way its request ends (and is counted) without a byte read.
        assert await wait_for_reads(server, before + len(stalled) + 20)
        answers = await asyncio.gather(*(asyncio.to_thread(read_to_end, s) for s in stalled))
    finally:
        for sock in stalled:
            sock.close()
    assert all(answer is not None for answer in answers), "a stalled reader was never cut off"
    statuses = [status_of(answer) for answer in answers if answer]
    assert set(statuses) <= {200, 503}
    cut = [a for a in answers if a and status_of(a) == 200]
    assert cut, "every reader was refused; none was cut off"
    assert all(not a.endswith(b"}") and not a.endswith(b"0\r\n\r\n") for a in cut)
    # Each cut reader counted once: it read nothing, so whichever deadline of
    # a write came first (a write stuck past SEND_TIMEOUT, or the rate); each
    # refused one under reads_full.
    cut_now = moved(cut_before, await cuts(server))
    refused = cut_now.pop("reads_full", 0)
    assert refused == statuses.count(503)
    assert set(cut_now) <= {"send_timeout", "too_slow"}
    assert sum(cut_now.values()) == len(cut)
    async with httpx.AsyncClient(timeout=60) as client:
        whole = await client.get(f"{server.base_url}/api/coupons/{HUGE}")
    assert whole.status_code == 200
    assert len(whole.json()["claimed_by"]) == HUGE_CLAIMS


async def open_stream(client: httpx.AsyncClient, url: str) -> httpx.Response:
    request = client.build_request("GET", url)
    return await client.send(request, stream=True)


def open_raw_stream(server: RunningServer, path: bytes) -> tuple[socket.socket, bytes]:
    """A stream opened on a raw socket: the socket, and what came until its
    first event (or the whole answer, when it was refused)."""
    sock = connect(server, b"GET " + path + b" HTTP/1.1\r\nHost: t\r\n\r\n")
    sock.settimeout(LIMIT)
    received = b""
    while b"data:" not in received and not received.startswith(b"HTTP/1.1 503"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    return sock, received


async def test_past_the_stream_cap_a_stream_is_answered_503(server: RunningServer) -> None:
    before = await cuts(server)
    held = [
        await asyncio.to_thread(open_raw_stream, server, b"/dashboard/events") for _ in range(2)
    ]
    try:
        for _, head in held:
            assert status_of(head) == 200
        async with httpx.AsyncClient(timeout=30) as client:
            for path in ("/dashboard/events", "/api/events/stream"):
                refused = await client.get(f"{server.base_url}{path}")
                assert refused.status_code == 503
                assert refused.headers["retry-after"]
                assert refused.json()["error"] == "service_unavailable"
    finally:
        for sock, _ in held:
            sock.close()
    # The places free as the streams end: a new one is served again.
    refused_again = 0
    for _ in range(int(LIMIT / 0.1)):
        sock, head = await asyncio.to_thread(open_raw_stream, server, b"/api/events/stream")
        sock.close()
        if status_of(head) == 200:
            break
        refused_again += 1
        await asyncio.sleep(0.1)
    assert status_of(head) == 200
    assert moved(before, await cuts(server)) == {"streams_full": 2 + refused_again}


async def read_events(response: httpx.Response) -> list[tuple[str, dict[str, object]]]:
    """(id, event) of every event until the server ends the stream."""
    seen: list[tuple[str, dict[str, object]]] = []
    event_id = ""
    async for line in response.aiter_lines():
        if line.startswith("id:"):
            event_id = line.partition(":")[2].strip()
        elif line.startswith("data:"):
            seen.append((event_id, json.loads(line.partition(":")[2])))
    return seen


async def test_an_idle_event_stream_ends_and_resumes_with_last_event_id(
    crowded: RunningServer,
) -> None:
    base = crowded.base_url
    cut_before = await cuts(crowded)
    await create_coupon(base, "IDLE", 10)
    async with httpx.AsyncClient(timeout=LIMIT) as client:
        first = await open_stream(client, f"{base}/api/events/stream")
        assert first.status_code == 200
        before = await read_events(first)  # ends by itself once nothing is new
        assert before, "the stream ended before its first events"
        assert await claim_all([base], "IDLE", ["late"]) is not None
        headers = {"Last-Event-ID": before[-1][0]}
        request = client.build_request("GET", f"{base}/api/events/stream", headers=headers)
        second = await client.send(request, stream=True)
        after = await read_events(second)
    assert [(e["type"], e["user_id"]) for _, e in after if e["coupon_name"] == "IDLE"] == [
        ("claimed", "late")
    ]
    assert moved(cut_before, await cuts(crowded)) == {"stream_idle": 2}


async def test_an_idle_dashboard_stream_ends(crowded: RunningServer) -> None:
    before = await cuts(crowded)
    async with httpx.AsyncClient(timeout=LIMIT) as client:
        response = await open_stream(client, f"{crowded.base_url}/dashboard/events")
        assert response.status_code == 200
        snapshots = [line async for line in response.aiter_lines() if line.startswith("data:")]
    assert snapshots  # it ran, and ended with nothing changing
    assert moved(before, await cuts(crowded)) == {"stream_idle": 1}


def read_steadily(sock: socket.socket) -> bytes:
    """Everything until the server closes, 16 KB every 50 ms (320 KB/s):
    never stuck for long on one write, yet far below CROWDED's rate."""
    sock.settimeout(LIMIT)
    received = bytearray()
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(16384):
            received += chunk
            time.sleep(0.05)
    return bytes(received)


async def test_a_steady_reader_below_the_minimum_rate_is_cut_off(crowded: RunningServer) -> None:
    before = await cuts(crowded)
    with connect(crowded, b"GET /api/coupons/HUGE HTTP/1.1\r\nHost: t\r\n\r\n") as sock:
        answer = await asyncio.to_thread(read_steadily, sock)
    assert status_of(answer) == 200
    assert not answer.endswith(b"0\r\n\r\n"), "the whole coupon was sent"
    assert moved(before, await cuts(crowded)) == {"too_slow": 1}


# Deadlines far beyond the test: a 408 or a 503 here comes from the cap; and
# an answer's total deadline far below them (no write or rate deadline).
FULL = {
    "WORKER_MAX_REQUESTS": "3",
    "BODY_TIMEOUT": "600",
    "STREAM_IDLE_TIMEOUT": "600",
    "SEND_TIMEOUT": "600",
    "MIN_SEND_RATE": "1",
    "RESPONSE_TIMEOUT": "2",
}


@pytest.fixture(scope="module")
def full(huge_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    log = tmp_path_factory.mktemp("full") / "server.log"
    with served(huge_database, log, workers=1, env=FULL) as live:
        yield live


def heard(sockets: list[socket.socket], already: dict[int, bytes]) -> dict[int, bytes]:
    """The answers that came on sockets not yet answered, by index."""
    found = {i: answered(sock) for i, sock in enumerate(sockets) if i not in already}
    return {i: answer for i, answer in found.items() if answer is not None}


def answered(sock: socket.socket) -> bytes | None:
    """What the server sent so far without waiting; None: nothing yet."""
    sock.setblocking(False)
    try:
        return sock.recv(65536) or b""
    except BlockingIOError:
        return None
    finally:
        sock.setblocking(True)


async def test_a_full_worker_cuts_the_oldest_stalled_body_for_a_new_request(
    full: RunningServer,
) -> None:
    before = await cuts(full)
    stalled = [connect(full, half_claim()) for _ in range(3)]
    try:
        answers: dict[int, bytes] = {}
        for _ in range(int(LIMIT / 0.1)):  # until the three fill the worker
            # The scrape is the new request: never refused for stalled bodies,
            # and it counts the room it made before it is answered.
            now = await read_cuts(full.base_url)
            assert now is not None
            # The oldest the worker saw is cut: whichever it parsed first.
            answers |= heard(stalled, answers)
            if answers:
                break
            await asyncio.sleep(0.1)
        # Each cut made room (one, or more when the next request came before
        # the cut one had left); none is answered anything else. With no
        # request since the last scrape, every one it counted is answered.
        assert now is not None
        evicted = moved(before, now)
        assert set(evicted) == {"evicted"}
        for _ in range(int(LIMIT / 0.1)):
            answers |= heard(stalled, answers)
            if len(answers) >= evicted["evicted"]:
                break
            await asyncio.sleep(0.1)
        assert len(answers) == evicted["evicted"]
        assert all(status_of(answer) == 408 for answer in answers.values())
    finally:
        for sock in stalled:
            with contextlib.suppress(OSError):
                sock.close()


async def test_a_worker_full_of_answers_in_progress_answers_503(full: RunningServer) -> None:
    before = await cuts(full)
    streams = [open_raw_stream(full, b"/dashboard/events") for _ in range(3)]
    try:
        assert all(b"data:" in received for _, received in streams)
        async with httpx.AsyncClient(timeout=30) as client:
            busy = await client.get(f"{full.base_url}/health")
        assert busy.status_code == 503
        assert busy.headers["retry-after"] == "1"
        assert busy.json()["error"] == "service_unavailable"
    finally:
        for sock, _ in streams:
            with contextlib.suppress(OSError):
                sock.close()
    # Every 503 counted: this one, and the scrapes' until the streams' places free.
    refused = 0
    while (after := await read_cuts(full.base_url)) is None:
        refused += 1
        await asyncio.sleep(0.1)
    assert moved(before, after).get("worker_full") == 1 + refused


async def test_an_answer_past_its_deadline_is_cut_off(full: RunningServer) -> None:
    before = await cuts(full)
    with connect(full, b"GET /api/coupons/HUGE HTTP/1.1\r\nHost: t\r\n\r\n") as sock:
        # Reads nothing until the cut is counted, then what had been sent.
        for _ in range(int(LIMIT / 0.1)):
            if moved(before, after := await cuts(full)):
                break
            await asyncio.sleep(0.1)
        answer = await asyncio.to_thread(read_to_end, sock)
    assert moved(before, after) == {"response_timeout": 1}
    assert answer is not None
    assert status_of(answer) == 200
    assert not answer.endswith(b"0\r\n\r\n"), "the whole coupon was sent"
