"""Faults in the many-instance topology, every answer recorded: an instance
killed under load, PgBouncer restarted under load, a stalled statement, an
instance whose database is gone."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from flashsale.bench.server import free_port
from tests.support.cluster import Cluster, start_instances, stop_all
from tests.support.invariants import assert_invariants
from tests.support.load import create_coupon
from tests.support.locks import locked
from tests.support.topology import HAProxy, PgBouncer
from tests.support.traffic import PROMPT, Traffic, claim_loop, claim_once, session, wait_until

STOCK = 1_000_000


async def committed_claimers(db: asyncpg.Connection[Any], coupon: str) -> set[str]:
    rows = await db.fetch("SELECT user_id FROM claims WHERE coupon_name = $1", coupon)
    return {row["user_id"] for row in rows}


async def test_an_instance_killed_under_load_leaves_the_rotation_and_loses_no_claim(
    cluster: Cluster, db: asyncpg.Connection[Any]
) -> None:
    assert cluster.haproxy is not None
    await create_coupon(cluster.base_url, "KILL", STOCK)
    traffic, stop = Traffic(), asyncio.Event()
    load = asyncio.create_task(
        claim_loop(cluster.base_url, "KILL", traffic, stop, clients=24, tag="k")
    )
    await asyncio.sleep(1.5)
    victim = cluster.instances[0]
    os.killpg(victim.process.pid, signal.SIGKILL)  # Granian's main process and its worker
    killed_at = time.monotonic()
    await asyncio.to_thread(cluster.haproxy.wait_for_states, {"app1": "DOWN"}, 10)
    down_at = time.monotonic()
    await asyncio.sleep(2)
    stop.set()
    await load
    # Every acknowledged claim is committed; nothing committed twice.
    assert traffic.winners <= await committed_claimers(db, "KILL")
    await assert_invariants(db)
    # The other instances kept answering, and once HAProxy had taken the
    # killed one out, every claim succeeded.
    # Requests in flight on the killed instance lose their connection (HAProxy
    # closes it: no answer, so nothing acknowledged); none started after.
    failed = [s for s in traffic.sent if s.status != 200]
    assert all(s.status in (None, 502, 503) for s in failed), traffic.outcomes()
    assert all(s.started <= down_at for s in failed), traffic.outcomes()
    after = traffic.between(down_at + 0.5, time.monotonic())
    assert after, traffic.outcomes()
    assert all(s.status == 200 for s in after), traffic.outcomes()
    during = traffic.between(killed_at, down_at)
    assert sum(s.status == 200 for s in during) >= len(during) // 2, traffic.outcomes()
    # The survivors are in the rotation: on a loaded machine a health check
    # may time out and take one out for a few checks, so wait for HAProxy's
    # view (its rise count) rather than read it once.
    await asyncio.to_thread(
        cluster.haproxy.wait_for_states, {"app1": "DOWN", "app2": "UP", "app3": "UP"}, 60
    )


async def test_pgbouncer_restarted_under_load_gives_503s_then_claims_within_5_s(
    cluster: Cluster, db: asyncpg.Connection[Any]
) -> None:
    await create_coupon(cluster.base_url, "BOUNCE", STOCK)
    traffic, stop = Traffic(), asyncio.Event()
    load = asyncio.create_task(
        claim_loop(cluster.base_url, "BOUNCE", traffic, stop, clients=24, tag="b")
    )
    await asyncio.sleep(1)
    cluster.pgbouncer.stop()
    await asyncio.sleep(1.5)
    cluster.pgbouncer.start()
    back_at = time.monotonic()
    resumed = await wait_until(
        lambda: any(s.status == 200 and s.started > back_at for s in traffic.sent), limit=5
    )
    await asyncio.sleep(1)
    stop.set()
    await load
    assert resumed, f"no claim succeeded within 5 s of PgBouncer's restart: {traffic.outcomes()}"
    statuses = {s.status for s in traffic.sent}
    assert 500 not in statuses, traffic.outcomes()
    assert None not in statuses, traffic.outcomes()
    assert statuses <= {200, 503}, traffic.outcomes()
    assert 503 in statuses, traffic.outcomes()
    assert all(s.error == "service_unavailable" for s in traffic.sent if s.status == 503)
    assert traffic.winners <= await committed_claimers(db, "BOUNCE")
    await assert_invariants(db)


async def test_a_stalled_statement_through_pgbouncer_ends_in_a_prompt_503(
    pgbouncer: PgBouncer, database: str, db: asyncpg.Connection[Any], folder: Path
) -> None:
    """The coupon row is locked by another connection: each batch's lock wait
    hits lock_timeout (1 s), a server-side timeout that reached the pooled
    backend as the role's default, before the client-side bound (2 s)."""
    [instance] = start_instances(
        pgbouncer.url_for(database), folder, 1, {"DB_STATEMENT_TIMEOUT": "1"}
    )
    try:
        await create_coupon(instance.base_url, "STALL", 10)
        traffic = Traffic()
        async with (
            locked(db, "SELECT 1 FROM coupons WHERE name = 'STALL' FOR UPDATE"),
            session(20) as http,
        ):
            await asyncio.gather(
                *(claim_once(http, instance.base_url, "STALL", f"u{n}", traffic) for n in range(20))
            )
        assert traffic.outcomes() == {"503 service_unavailable": 20}
        # Batches queue one behind the other on the coupon, each waiting its
        # lock_timeout; which bound ended the waits is the metrics' below.
        slowest = max(s.latency for s in traffic.sent)
        assert slowest < PROMPT, f"slowest 503 took {slowest:.2f} s"
        errors = [
            line
            for line in (await _get(f"{instance.base_url}/metrics")).splitlines()
            if line.startswith("flashsale_db_errors_total{")
        ]
        # The server ended the waits (statement_timeout: QueryCanceledError, or
        # lock_timeout: LockNotAvailableError; both 1 s), not asyncpg's
        # client-side command_timeout (that raises TimeoutError).
        server_side = ("QueryCanceledError", "LockNotAvailableError")
        assert any(kind in line for line in errors for kind in server_side), errors
        assert not any("TimeoutError" in line for line in errors), errors
        after = Traffic()
        async with session(1) as http:
            await claim_once(http, instance.base_url, "STALL", "after", after)
        assert after.outcomes() == {"ok": 1}
    finally:
        stop_all([instance])
    await assert_invariants(db)


async def test_an_instance_whose_database_is_gone_leaves_the_rotation_and_returns(
    pgbouncer: PgBouncer, database: str, folder: Path
) -> None:
    """Two instances, each through a PgBouncer of its own: stopping one
    PgBouncer takes only that instance's database away."""
    own = PgBouncer(folder / "own-pgbouncer", pgbouncer.server, free_port())
    own.start()
    try:
        [healthy] = start_instances(pgbouncer.url_for(database), folder / "a", 1)
        [cut_off] = start_instances(own.url_for(database), folder / "b", 1)
        backends = [i.base_url.removeprefix("http://") for i in (healthy, cut_off)]
        haproxy = HAProxy(folder / "haproxy", free_port(), backends)
        haproxy.start()
        try:
            await asyncio.to_thread(haproxy.wait_for_states, {"app1": "UP", "app2": "UP"})
            own.stop()
            await asyncio.to_thread(haproxy.wait_for_states, {"app1": "UP", "app2": "DOWN"})
            async with httpx.AsyncClient(base_url=haproxy.base_url) as http:
                replies = [(await http.get("/health")).status_code for _ in range(10)]
            assert replies == [200] * 10  # only the instance with a database answers
            own.start()
            await asyncio.to_thread(haproxy.wait_for_states, {"app1": "UP", "app2": "UP"})
        finally:
            haproxy.stop()
            stop_all([healthy, cut_off])
    finally:
        own.stop()


async def _get(url: str) -> str:
    async with httpx.AsyncClient() as http:
        return (await http.get(url)).text
