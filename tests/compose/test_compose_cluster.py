"""The cluster profile, ``docker-compose --profile cluster up --build --scale
instance=3``: a rush through its HAProxy across the three instances sells
exactly the stock, the database agrees, and ``stop`` ends every container
(PgBouncer included) with 0. The tests run in file order on one project."""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter

import httpx
from httpx import Response

from tests.support.compose import ComposeProject

INSTANCES = 3
STOCK = 100
CLAIMERS = 1_000
CONCURRENCY = 50
# Every instance must be in HAProxy's rotation before the rush (checks pass
# within seconds; the machine may be loaded).
ROTATION_LIMIT = 180.0
# The rush's coupon as PostgreSQL holds it: remaining stock, claims, claimers.
STORED = (
    "SELECT c.remaining_amount, count(l.*), count(DISTINCT l.user_id) FROM coupons c "
    "LEFT JOIN claims l ON l.coupon_name = c.name WHERE c.name = 'RUSH' GROUP BY 1"
)
READ_METRICS = (
    "import urllib.request; "
    "print(urllib.request.urlopen('http://127.0.0.1:8080/metrics', timeout=10).read().decode())"
)


def claims_per_instance(project: ComposeProject, coupon: str) -> list[Counter[str]]:
    """Each instance's own count of claims decided for the coupon, by outcome."""
    line = r'^flashsale_claims_total\{coupon="(.+)",outcome="(\w+)"\} ([0-9.]+)$'
    pattern = re.compile(line, re.MULTILINE)
    counts = []
    for index in range(1, INSTANCES + 1):
        metrics = project.exec("instance", "python", "-c", READ_METRICS, index=index)
        found = pattern.finditer(metrics)
        counts.append(Counter({m[2]: int(float(m[3])) for m in found if m[1] == coupon}))
    return counts


async def claim_all(client: httpx.AsyncClient, coupon: str, users: list[str]) -> list[Response]:
    return await asyncio.gather(
        *(
            client.post("/api/coupons/claim", json={"user_id": user, "coupon_name": coupon})
            for user in users
        )
    )


async def wait_for_every_instance(project: ComposeProject, client: httpx.AsyncClient) -> None:
    """Claims on a warm-up coupon until each instance has decided some."""
    created = await client.post("/api/coupons", json={"name": "WARMUP", "amount": 1})
    assert created.status_code == 201
    deadline = time.monotonic() + ROTATION_LIMIT
    round_ = 0
    while time.monotonic() < deadline:
        round_ += 1
        await claim_all(client, "WARMUP", [f"warm-{round_}-{n}" for n in range(3 * INSTANCES)])
        if all(sum(counts.values()) for counts in claims_per_instance(project, "WARMUP")):
            return
    raise AssertionError(f"not every instance served within {ROTATION_LIMIT} s")


def database_rows(project: ComposeProject, query: str) -> str:
    return project.exec("db", "psql", "-U", "postgres", "-d", "coupondb", "-AtX", "-c", query)


async def test_a_rush_across_three_instances_sells_exactly_the_stock(
    cluster_profile: ComposeProject,
) -> None:
    limits = httpx.Limits(max_connections=CONCURRENCY)
    base = cluster_profile.url("CLUSTER_PORT")
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
        await wait_for_every_instance(cluster_profile, client)
        created = await client.post("/api/coupons", json={"name": "RUSH", "amount": STOCK})
        assert created.status_code == 201
        responses = await claim_all(client, "RUSH", [f"user-{n}" for n in range(CLAIMERS)])
        coupon = (await client.get("/api/coupons/RUSH")).json()

    assert Counter(r.status_code for r in responses) == {200: STOCK, 409: CLAIMERS - STOCK}
    assert {r.json()["error"] for r in responses if r.status_code == 409} == {"sold_out"}
    granted = sorted(r.json()["user_id"] for r in responses if r.status_code == 200)
    assert (coupon["remaining_amount"], sorted(coupon["claimed_by"])) == (0, granted)
    assert database_rows(cluster_profile, STORED).strip() == f"0|{STOCK}|{STOCK}"
    per_instance = claims_per_instance(cluster_profile, "RUSH")
    assert all(sum(counts.values()) > 0 for counts in per_instance), per_instance
    assert sum(per_instance, Counter()) == {"claimed": STOCK, "sold_out": CLAIMERS - STOCK}
    cluster_profile.exec("instance", "flashsale", "verify")


def test_stop_exits_every_cluster_container_with_0(cluster_profile: ComposeProject) -> None:
    cluster_profile.run("stop")
    assert cluster_profile.wait_for_up_to_end() == 0
    containers = cluster_profile.containers()
    services = Counter(container.service for container in containers)
    expected = {"db": 1, "app": 1, "front": 1, "pgbouncer": 1, "instance": INSTANCES, "haproxy": 1}
    assert services == expected
    assert [(c.name, c.running, c.exit_code) for c in containers if c.running or c.exit_code] == []
