"""The front door (deploy/haproxy/haproxy.cfg, Debian's HAProxy) bounds what
the service cannot: connections that never send a byte or stop half-way
through a body, a flood of connections from one address, and one address's
request rate. Other addresses are loopback ones (127.0.0.2, ...): Linux
answers on the whole 127.0.0.0/8 without setup, and HAProxy sees each as its
own source."""

from __future__ import annotations

import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from flashsale.bench.server import RunningServer, free_port
from tests.support.cluster import require
from tests.support.servers import serve
from tests.support.topology import HAProxy

# Generous: the condition is waited for, never timed (a loaded CI machine).
PATIENCE = 60.0
SOURCE_CONNECTIONS = 20
SOURCE_REQUESTS = 30  # per 10 s
CLAIM = (
    b"POST /api/coupons/claim HTTP/1.1\r\nHost: x\r\n"
    b"Content-Type: application/json\r\nContent-Length: 50\r\n\r\n{"
)


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="flashsale-front-door-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def instance(module_database: str, folder: Path) -> Iterator[RunningServer]:
    require("haproxy", "haproxy")
    server = serve(module_database, folder / "instance.log")
    yield server
    server.stop()


def front_door(folder: Path, instance: RunningServer, **settings: str) -> HAProxy:
    """HAProxy with deploy's config and these FLASHSALE_* bounds."""
    backend = instance.base_url.removeprefix("http://")
    haproxy = HAProxy(folder / f"haproxy-{free_port()}", free_port(), [backend], settings)
    haproxy.start()
    try:
        haproxy.wait_for_states({"app1": "UP"})
    except BaseException:
        haproxy.stop()  # never left running past a failed set-up
        raise
    return haproxy


@pytest.fixture
def strict(folder: Path, instance: RunningServer) -> Iterator[HAProxy]:
    """Short request timeout, small per-source bounds."""
    haproxy = front_door(
        folder,
        instance,
        FLASHSALE_HTTP_REQUEST_TIMEOUT="2s",
        FLASHSALE_SOURCE_CONNECTIONS=str(SOURCE_CONNECTIONS),
        FLASHSALE_SOURCE_REQUESTS=str(SOURCE_REQUESTS),
    )
    yield haproxy
    haproxy.stop()


def connect(haproxy: HAProxy, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", haproxy.port))
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything HAProxy sends until it closes the connection."""
    sock.settimeout(PATIENCE)
    received = b""
    while chunk := sock.recv(4096):
        received += chunk
    return received


def client(haproxy: HAProxy, source: str) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=source)
    return httpx.Client(base_url=haproxy.base_url, transport=transport, timeout=PATIENCE)


def create(haproxy: HAProxy, name: str, amount: int) -> None:
    with client(haproxy, "127.0.0.9") as http:
        assert http.post("/api/coupons", json={"name": name, "amount": amount}).status_code == 201


def test_a_connection_that_never_sends_a_byte_is_closed(strict: HAProxy) -> None:
    with connect(strict) as silent:
        received = read_until_closed(silent)
    # HAProxy closes it (with a 408 or without a word): it never reached the
    # service, which could not have timed it out (Granian's header timer
    # starts at the first byte).
    assert received in (b"",) or received.startswith(b"HTTP/1.1 408"), received


def test_a_half_sent_claim_body_is_answered_408_and_closed(strict: HAProxy) -> None:
    with connect(strict) as stalled:
        stalled.sendall(CLAIM)  # 1 of 50 bytes, then nothing
        received = read_until_closed(stalled)
    assert received.startswith(b"HTTP/1.1 408"), received


def open_sockets(sockets: list[socket.socket]) -> list[socket.socket]:
    """The sockets HAProxy has not closed (a closed one reads b"" at once)."""
    still = []
    for sock in sockets:
        sock.setblocking(False)
        try:
            if sock.recv(1, socket.MSG_PEEK):
                still.append(sock)
        except BlockingIOError:
            still.append(sock)
        except ConnectionError:
            pass
    return still


def wait_for(condition: object, what: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {PATIENCE:g} s: {what}")


def test_a_connection_flood_from_one_address_is_bounded_while_another_claims(
    folder: Path, instance: RunningServer
) -> None:
    # A long request timeout, so that only the per-source bound closes them.
    haproxy = front_door(folder, instance, FLASHSALE_SOURCE_CONNECTIONS=str(SOURCE_CONNECTIONS))
    flood = [connect(haproxy) for _ in range(3 * SOURCE_CONNECTIONS)]
    try:
        wait_for(
            lambda: len(open_sockets(flood)) == SOURCE_CONNECTIONS,
            f"HAProxy leaves {SOURCE_CONNECTIONS} of the flood's connections open",
        )
        assert source_connections(haproxy, "127.0.0.1") == SOURCE_CONNECTIONS
        create(haproxy, "FLOOD", 10)  # from 127.0.0.9
        with client(haproxy, "127.0.0.2") as other:
            claimed = other.post(
                "/api/coupons/claim", json={"user_id": "u1", "coupon_name": "FLOOD"}
            )
        assert claimed.status_code == 200, claimed.text
        with pytest.raises(httpx.TransportError), client(haproxy, "127.0.0.1") as flooder:
            flooder.get("/health")
    finally:
        for sock in flood:
            sock.close()
    # Once the flood is gone, its address is served again.
    wait_for(lambda: source_connections(haproxy, "127.0.0.1") == 0, "the flood's rows freed")
    with client(haproxy, "127.0.0.1") as again:
        assert again.get("/health").status_code == 200
    haproxy.stop()


def source_connections(haproxy: HAProxy, address: str) -> int:
    """conn_cur of ``address``'s row in the frontend's stick table."""
    table = haproxy.command("show table web")
    row = re.search(rf"key=::ffff:{re.escape(address)} .*conn_cur=(\d+)", table)
    return int(row.group(1)) if row else 0


def test_one_address_past_its_request_rate_is_answered_429(strict: HAProxy) -> None:
    create(strict, "RATE", 1000)
    with client(strict, "127.0.0.3") as eager:
        answers = [
            eager.post("/api/coupons/claim", json={"user_id": f"e{n}", "coupon_name": "RATE"})
            for n in range(SOURCE_REQUESTS + 10)
        ]
    statuses = [answer.status_code for answer in answers]
    assert statuses[:SOURCE_REQUESTS] == [200] * SOURCE_REQUESTS
    refused = answers[-1]
    assert refused.status_code == 429
    assert refused.json()["error"] == "rate_limited"
    assert refused.json()["message"]
    assert refused.headers["retry-after"] == "10"
    assert refused.headers["content-type"] == "application/json"
    # Another address is not slowed down by it.
    with client(strict, "127.0.0.4") as calm:
        claimed = calm.post("/api/coupons/claim", json={"user_id": "c1", "coupon_name": "RATE"})
    assert claimed.status_code == 200


def test_the_service_limits_each_client_behind_it_and_a_spoofed_address_does_not_help(
    module_database: str, folder: Path
) -> None:
    """Behind the front door with CLAIM_RATE on (as the compose profiles run
    it): HAProxy replaces the client's X-Forwarded-For with the address it
    sees, the service trusts HAProxy's, so each client has its own bucket and
    a client inventing addresses still has one."""
    limits = {"CLAIM_RATE": "0.001", "CLAIM_BURST": "2", "TRUSTED_PROXIES": "127.0.0.1/32"}
    limited = serve(module_database, folder / "limited.log", env=limits)
    haproxy = front_door(folder, limited)
    try:
        create(haproxy, "PER_CLIENT", 100)
        with client(haproxy, "127.0.0.6") as spoofer:
            answers = [
                spoofer.post(
                    "/api/coupons/claim",
                    json={"user_id": f"s{n}", "coupon_name": "PER_CLIENT"},
                    headers={"X-Forwarded-For": f"198.51.100.{n}"},
                )
                for n in range(3)
            ]
        with client(haproxy, "127.0.0.7") as other:
            claimed = other.post(
                "/api/coupons/claim", json={"user_id": "o1", "coupon_name": "PER_CLIENT"}
            )
    finally:
        haproxy.stop()
        limited.stop()
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[-1].json()["error"] == "rate_limited"
    assert "retry-after" in answers[-1].headers
    assert claimed.status_code == 200


def frontend_connections(haproxy: HAProxy) -> int:
    """Connections the frontend holds now (``show stat``'s scur)."""
    lines = haproxy.command("show stat").splitlines()
    header = lines[0].removeprefix("# ").split(",")
    for line in lines[1:]:
        row = dict(zip(header, line.split(","), strict=False))
        if row.get("pxname") == "web" and row.get("svname") == "FRONTEND":
            return int(row["scur"] or 0)
    raise AssertionError("no FRONTEND row for web")


def test_past_the_total_new_connections_wait_and_are_served_once_places_free(
    folder: Path, instance: RunningServer
) -> None:
    """FLASHSALE_MAXCONN: every source together. Past it HAProxy accepts no
    more: they wait in the kernel's backlog (as long again as the total:
    HAProxy's default), not refused."""
    total, waiting = 10, 5
    # A request timeout far longer than the test: only the total decides.
    haproxy = front_door(
        folder, instance, FLASHSALE_MAXCONN=str(total), FLASHSALE_HTTP_REQUEST_TIMEOUT="300s"
    )
    sources = [f"127.0.0.{n}" for n in range(20, 20 + total + waiting)]  # one each
    held = [connect(haproxy, source) for source in sources]
    try:
        seen: list[int] = []

        def holds_the_total() -> bool:
            seen.append(frontend_connections(haproxy))
            return seen[-1] == total

        wait_for(holds_the_total, f"HAProxy holds {total} connections")
        assert max(seen) == total  # never more, although 15 are connected
        for sock in held[:total]:
            sock.close()
        # The next ones in the backlog are accepted as places free.
        wait_for(lambda: frontend_connections(haproxy) == waiting, "the waiting ones accepted")
        assert len(open_sockets(held[total:])) == waiting
    finally:
        for sock in held:
            sock.close()
    wait_for(lambda: frontend_connections(haproxy) == 0, "every connection closed")
    with client(haproxy, "127.0.0.2") as http:
        assert http.get("/health").status_code == 200
    haproxy.stop()
