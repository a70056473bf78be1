"""Per-client claim limits (CLAIM_RATE, http/limits.py) on ``flashsale serve``
over real sockets: the 429 and its Retry-After, and whose X-Forwarded-For
counts, and that an end user's bucket follows its token, not its address.
Other clients come from other loopback addresses (127.0.0.2, ...), which
Linux answers without setup. One worker: one bucket table."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from flashsale.bench.server import RunningServer
from tests.support.cuts import cut_counts, moved
from tests.support.jwts import bearer, jwt_settings, mint_hs256, write_public_key
from tests.support.servers import served

BURST = 3
# One token per 1,000 s: no bucket refills during the test, however slow.
RATE = "0.001"
PROXY = "127.0.0.2"


@pytest.fixture(scope="module")
def server(
    module_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    env = {
        **jwt_settings(write_public_key(tmp_path_factory.mktemp("keys"))),
        "CLAIM_RATE": RATE,
        "CLAIM_BURST": str(BURST),
        "TRUSTED_PROXIES": f"{PROXY}/32",
        "ADMIN_TOKEN": "limits-admin",
    }
    with served(module_database, tmp_path_factory.mktemp("limits") / "server.log", env=env) as live:
        yield live


def client(server: RunningServer, source: str) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=source)
    return httpx.Client(base_url=server.base_url, transport=transport, timeout=30)


ADMIN = {"Authorization": "Bearer limits-admin"}


@pytest.fixture(scope="module")
def coupon(server: RunningServer) -> str:
    with client(server, "127.0.0.1") as http:
        created = http.post(
            "/api/coupons", json={"name": "LIMITED", "amount": 10_000}, headers=ADMIN
        )
    assert created.status_code == 201
    return "LIMITED"


def claims(
    http: httpx.Client, coupon: str, prefix: str, count: int, **headers: str
) -> list[httpx.Response]:
    return [
        http.post(
            "/api/coupons/claim",
            json={"user_id": f"{prefix}-{n}", "coupon_name": coupon},
            headers=headers,
        )
        for n in range(count)
    ]


def cuts(server: RunningServer) -> dict[str, int]:
    with client(server, "127.0.0.1") as http:
        scraped = http.get("/metrics", headers=ADMIN)
    assert scraped.status_code == 200
    return cut_counts(scraped.text)


def test_an_address_past_its_burst_is_answered_429_with_retry_after(
    server: RunningServer, coupon: str
) -> None:
    before = cuts(server)
    with client(server, "127.0.0.3") as http:
        answers = claims(http, coupon, "eager", BURST + 2)
    assert [a.status_code for a in answers] == [200] * BURST + [429, 429]
    refused = answers[-1]
    assert refused.json()["error"] == "rate_limited"
    assert "retry" in refused.json()["message"]
    assert refused.headers["content-type"] == "application/json"
    assert 1 <= int(refused.headers["retry-after"]) <= 1000
    # Another address is not held back by it; the operator never is.
    with client(server, "127.0.0.4") as calm:
        assert claims(calm, coupon, "calm", 1)[0].status_code == 200
    with client(server, "127.0.0.3") as admin:
        assert {a.status_code for a in claims(admin, coupon, "op", 5, **ADMIN)} == {200}
    # Each 429 counted, nothing else.
    assert moved(before, cuts(server)) == {"rate_limited": 2}


def test_a_spoofed_x_forwarded_for_from_an_untrusted_peer_is_ignored(
    server: RunningServer, coupon: str
) -> None:
    with client(server, "127.0.0.5") as http:
        answers = [
            claims(http, coupon, f"spoof-{n}", 1, **{"X-Forwarded-For": f"198.51.100.{n}"})[0]
            for n in range(BURST + 1)
        ]
    assert [a.status_code for a in answers] == [200] * BURST + [429]


def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_bucket(
    server: RunningServer, coupon: str
) -> None:
    with client(server, PROXY) as proxy:
        # Many clients through one proxy: none is held back by the others.
        spread = [
            claims(proxy, coupon, f"via-{n}", 1, **{"X-Forwarded-For": f"203.0.113.{n}"})[0]
            for n in range(3 * BURST)
        ]
        assert {a.status_code for a in spread} == {200}
        # One forwarded client past its burst is limited, whatever it wrote
        # itself to the left of what the proxy appended.
        one = [
            claims(proxy, coupon, f"one-{n}", 1, **{"X-Forwarded-For": f"10.9.9.{n}, 192.0.2.99"})[
                0
            ]
            for n in range(BURST + 1)
        ]
    assert [a.status_code for a in one] == [200] * BURST + [429]


def test_an_end_user_is_limited_by_its_token_whatever_its_address(
    server: RunningServer, coupon: str
) -> None:
    token = bearer(mint_hs256("mallory"))
    body = {"user_id": "mallory", "coupon_name": coupon}
    with client(server, "127.0.0.6") as first:
        answers = [first.post("/api/coupons/claim", json=body, headers=token) for _ in range(BURST)]
    assert [a.status_code for a in answers] == [200] + [409] * (BURST - 1)
    with client(server, "127.0.0.7") as elsewhere:
        moved = elsewhere.post("/api/coupons/claim", json=body, headers=token)
        assert (moved.status_code, moved.json()["error"]) == (429, "rate_limited")
        # Another user from the same address has a bucket of its own.
        other = bearer(mint_hs256("trent"))
        fresh = {"user_id": "trent", "coupon_name": coupon}
        assert elsewhere.post("/api/coupons/claim", json=fresh, headers=other).status_code == 200
