"""Every cell of docs/access.md's table of routes x callers x CLAIM_AUTH
mode, for a server as deployed (listening beyond loopback, ADMIN_TOKEN and
BACKEND_TOKEN set, end users' JWTs verified): the allowed callers succeed,
every other gets 401 (no credential) or 403 (a credential that may not) with
the usual JSON error body, never a 500. One table (ROUTES) drives it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.api import Client, in_process_client
from tests.support.jwts import bearer, jwt_settings, mint, write_public_key

OPERATOR = "ops-token-0123456789"
BACKEND = "shop-token-0123456789"
METRICS = "scrape-token-0123456789"
CALLERS = ("operator", "backend", "alice", "bob", "anonymous")
MODES = ("open", "user", "backend")
ALL = frozenset(CALLERS)
OPERATOR_ONLY = frozenset({"operator"})
STAFF = frozenset({"operator", "backend"})
OWNER = frozenset({"operator", "backend", "alice"})  # alice is the user in the paths


def headers_of(caller: str) -> dict[str, str]:
    return {
        "operator": bearer(OPERATOR),
        "backend": bearer(BACKEND),
        "alice": bearer(mint("alice")),
        "bob": bearer(mint("bob")),
        "anonymous": {},
    }[caller]


Send = Callable[[Client, str, dict[str, str]], Awaitable[httpx.Response]]


@dataclass(frozen=True)
class Route:
    name: str
    send: Send  # (client, coupon, headers) -> response
    success: int
    allowed: dict[str, frozenset[str]]  # mode -> callers
    claimed: bool = False  # set-up: alice holds the coupon


def every_mode(callers: frozenset[str]) -> dict[str, frozenset[str]]:
    return dict.fromkeys(MODES, callers)


def bodiless(
    name: str,
    method: str,
    path: str,
    callers: frozenset[str],
    *,
    success: int = 200,
    claimed: bool = False,
) -> Route:
    """A request without a body, allowed to the same callers in every mode;
    ``{n}`` in the path is the coupon."""
    return Route(
        name,
        lambda c, n, h: c.request(method, path.format(n=n), headers=h),
        success,
        every_mode(callers),
        claimed=claimed,
    )


ROUTES = [
    Route(
        "create coupon",
        lambda c, n, h: c.post("/api/coupons", json={"name": n + "x", "amount": 2}, headers=h),
        201,
        every_mode(OPERATOR_ONLY),
    ),
    Route(
        "change coupon",
        lambda c, n, h: c.patch(f"/api/coupons/{n}", json={"amount": 9}, headers=h),
        200,
        every_mode(OPERATOR_ONLY),
    ),
    bodiless("list coupons", "GET", "/api/coupons", ALL),
    bodiless("read coupon", "GET", "/api/coupons/{n}", ALL),
    Route(
        "claim for alice",
        lambda c, n, h: c.post(
            "/api/coupons/claim", json={"user_id": "alice", "coupon_name": n}, headers=h
        ),
        200,
        {"open": ALL - {"bob"}, "user": OWNER, "backend": STAFF},
    ),
    bodiless("list a coupon's claims", "GET", "/api/coupons/{n}/claims", ALL),
    bodiless("read alice's claim", "GET", "/api/coupons/{n}/claims/alice", OWNER, claimed=True),
    bodiless(
        "release alice's claim",
        "DELETE",
        "/api/coupons/{n}/claims/alice",
        STAFF,
        success=204,
        claimed=True,
    ),
    bodiless(
        "redeem alice's claim", "POST", "/api/coupons/{n}/claims/alice/redeem", STAFF, claimed=True
    ),
    bodiless("alice's claims", "GET", "/api/users/alice/claims", OWNER),
    bodiless("a coupon's events", "GET", "/api/coupons/{n}/events", STAFF),
    bodiless("the events feed", "GET", "/api/events", STAFF),
    # A stream never ends, and the in-process client waits for the end: an
    # admitted caller's stream is refused after the guard, by its cursor
    # (400); tests/e2e/test_access_streams.py reads both streams' 200s.
    bodiless(
        "the events stream", "GET", "/api/events/stream?after=not-a-cursor", STAFF, success=400
    ),
    bodiless("webhooks", "GET", "/api/webhooks", OPERATOR_ONLY),
    bodiless("dashboard", "GET", "/dashboard", OPERATOR_ONLY),
    bodiless("metrics", "GET", "/metrics", OPERATOR_ONLY),
    bodiless("docs", "GET", "/docs", ALL),
    bodiless("openapi", "GET", "/openapi.json", ALL),
    bodiless("health", "GET", "/health", ALL),
]


@pytest.fixture
async def deployed(
    request: pytest.FixtureRequest, database: str, tmp_path: Path
) -> AsyncIterator[Client]:
    environment = {
        "APP_HOST": "0.0.0.0",
        "ADMIN_TOKEN": f"ops:{OPERATOR}",
        "BACKEND_TOKEN": f"shop:{BACKEND}",
        "METRICS_TOKEN": METRICS,
        "CLAIM_AUTH": request.param,
        **jwt_settings(key_file=write_public_key(tmp_path)),
    }
    async with in_process_client(database, **environment) as client:
        yield client


CELLS = [
    pytest.param(mode, route, id=f"{mode}-{route.name.replace(' ', '_')}")
    for mode in MODES
    for route in ROUTES
]


@pytest.mark.parametrize(("deployed", "route"), CELLS, indirect=["deployed"])
async def test_each_caller_gets_what_the_table_says(deployed: Client, route: Route) -> None:
    mode = _mode_of(deployed)
    failures = []
    for caller in CALLERS:
        coupon = await _fresh_coupon(deployed, claimed=route.claimed)
        response = await route.send(deployed, coupon, headers_of(caller))
        allowed = caller in route.allowed[mode]
        failures += _judge(route, caller, allowed, response)
    assert failures == []


def _judge(route: Route, caller: str, allowed: bool, response: httpx.Response) -> list[str]:
    status = response.status_code
    if allowed:
        return [] if status == route.success else [f"{caller}: {status} {response.text[:200]}"]
    expected = 401 if caller == "anonymous" else 403
    if status != expected:
        return [f"{caller}: {status}, expected {expected}: {response.text[:200]}"]
    body = response.json()
    code = {401: "unauthorized", 403: "forbidden"}[expected]
    if body.get("error") != code or not isinstance(body.get("message"), str):
        return [f"{caller}: body {body}"]
    if expected == 401 and response.headers.get("www-authenticate") != "Bearer":
        return [f"{caller}: no challenge"]
    return []


def _mode_of(client: Client) -> str:
    access = client.app.state["access"]
    return str(access.claim_auth.value)


async def _fresh_coupon(client: Client, *, claimed: bool) -> str:
    name = "C" + uuid.uuid4().hex[:12]
    operator = bearer(OPERATOR)
    created = await client.post(
        "/api/coupons", json={"name": name, "amount": 5, "hold_seconds": 600}, headers=operator
    )
    assert created.status_code == 201, created.text
    if claimed:
        claim = {"user_id": "alice", "coupon_name": name}
        answer = await client.post("/api/coupons/claim", json=claim, headers=operator)
        assert answer.status_code == 200, answer.text
    return name


async def test_a_metrics_token_reads_metrics_and_nothing_else(
    database: str, tmp_path: Path
) -> None:
    beyond = "0.0.0.0"
    environment = {"APP_HOST": beyond, "ADMIN_TOKEN": OPERATOR, "METRICS_TOKEN": METRICS}
    async with in_process_client(database, **environment) as client:
        assert (await client.get("/metrics", headers=bearer(METRICS))).status_code == 200
        refused = await client.get("/api/webhooks", headers=bearer(METRICS))
        assert (refused.status_code, refused.json()["error"]) == (401, "unauthorized")
