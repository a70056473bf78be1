"""``flashsale bench --webhooks``: what webhooks cost the claims. The hot
coupon under wrk on one server, first plain, then with five endpoints
subscribed to every event (three answering at once, one after 10 s, past
WEBHOOK_TIMEOUT, and one answering 1 MB), alternating over ``rounds``: the
claims/s of both in the same run, each endpoint's backlog and lag when the
load stops, and how long each took to drain (the slow one never does: every
attempt times out). Between rounds the endpoints are deleted.

The receivers (bench/receivers.py) run on loopback in a thread of this
process; the server may reach them because the bench sets
WEBHOOK_ALLOW_NETWORKS=127.0.0.0/8."""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.table import Table

from flashsale.bench.database import create_fresh_database, drop_database
from flashsale.bench.receivers import Endpoint, Receivers
from flashsale.bench.scenarios import HOT
from flashsale.bench.server import RunningServer, start_server
from flashsale.bench.wrk import Load, WrkResult, run_wrk
from flashsale.config import WebhookDelivery, load_settings
from flashsale.storage.admin import settle_database

# name, seconds before answering, body bytes
ENDPOINTS = (
    Endpoint("fast-1", 0.0, 0),
    Endpoint("fast-2", 0.0, 0),
    Endpoint("fast-3", 0.0, 0),
    Endpoint("slow-10s", 10.0, 0),
    Endpoint("big-1MB", 0.0, 1 << 20),
)
NAMES = tuple(endpoint.name for endpoint in ENDPOINTS)
# The drain is watched for these: the others answer past WEBHOOK_TIMEOUT and
# never drain (every attempt fails; their events wait, in order).
DRAINING = tuple(e.name for e in ENDPOINTS if e.delay_s < load_settings().webhook_timeout)
DRAIN_MAX_S = 120.0
# The loopback receivers let in; no endpoint disabled for its backlog (a 10 s
# hot run queues about 100,000 events each, WEBHOOK_BACKLOG_MAX's default):
# the bench measures what delivering them costs.
SERVER_ENV = {"WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8", "WEBHOOK_BACKLOG_MAX": "100000000"}


@dataclass(frozen=True, slots=True)
class EndpointEnd:
    name: str
    backlog: int  # events queued and not delivered when the load stopped
    lag_s: float | None  # age of the oldest of them
    drained_s: float | None  # seconds after the load stopped; None: not within DRAIN_MAX_S
    delivered: int  # requests answered 2xx by its receiver during the round
    left: int  # backlog when the drain ended
    drain_s: float  # how long the drain was watched
    drained_events: int  # answered 2xx while the drain was watched

    @property
    def rate(self) -> float:
        """Events delivered per second while draining (the receiver's count:
        the backlog's grows meanwhile while the pump catches up)."""
        return self.drained_events / max(self.drain_s, 1e-9)

    @property
    def drain_estimate_s(self) -> float | None:
        """The drain time, measured or (not drained) extrapolated at ``rate``."""
        if self.drained_s is not None:
            return self.drained_s
        return None if self.rate == 0 else self.drain_s + self.left / self.rate


@dataclass(frozen=True, slots=True)
class WebhookRound:
    plain: WrkResult
    hooked: WrkResult
    endpoints: list[EndpointEnd]
    plain_first: bool = True

    @property
    def ratio(self) -> float:
        return self.hooked.ok_per_s / max(self.plain.ok_per_s, 1e-9)


def median_ratio(rounds: list[WebhookRound]) -> float | None:
    return statistics.median(done.ratio for done in rounds) if rounds else None


def run_webhook_bench(
    server_url: str, workdir: Path, load: Load, workers: int, rounds: int,
    announce: Callable[[str], None],
) -> list[WebhookRound]:  # fmt: skip
    """``rounds`` of plain and hooked, on one server and one database; the
    plain run goes first in odd rounds and last in even ones, so neither
    always has the warmer server."""
    url = asyncio.run(create_fresh_database(server_url, (HOT,)))
    receivers = Receivers(ENDPOINTS)
    receivers.start()
    server = start_server(url, workdir / "server-webhooks.log", workers=workers, env=SERVER_ENV)
    deliverer = _start_deliverer(url, workdir / "deliver.log")
    try:
        return [
            _round(server, receivers, load, announce, number, settle=lambda: _settle(url))
            for number in range(1, rounds + 1)
        ]
    finally:
        if deliverer is not None:
            deliverer.terminate()
            deliverer.wait(30)
        server.stop()
        receivers.stop()
        asyncio.run(drop_database(server_url, url))


def _start_deliverer(url: str, log_path: Path) -> subprocess.Popen[bytes] | None:
    """With WEBHOOK_DELIVERY=separate in the environment (the serve workers
    deliver nothing), one ``flashsale deliver`` beside the server, with the
    environment's WEBHOOK_* settings (its CPU priority: WEBHOOK_DELIVER_NICE)."""
    if load_settings().webhook_delivery is not WebhookDelivery.SEPARATE:
        return None
    environment = {**os.environ, **SERVER_ENV, "DATABASE_URL": url}
    with log_path.open("wb") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "flashsale", "deliver"],
            env=environment, stdout=log_file, stderr=subprocess.STDOUT, cwd=log_path.parent,
        )  # fmt: skip


def _round(
    server: RunningServer, receivers: Receivers, load: Load,
    announce: Callable[[str], None], number: int, *, settle: Callable[[], None],
) -> WebhookRound:  # fmt: skip
    """Each run starts on a settled database (vacuumed, checkpointed): the
    run before it, plain or draining, leaves it nothing to pay for."""
    claim_url = server.base_url + HOT.path

    def plain_run() -> WrkResult:
        settle()
        announce(f"round {number}: hot coupon, plain")
        return run_wrk(claim_url, load, HOT.wrk_args(f"p{uuid.uuid4().hex[:6]}-"))

    first = plain_run() if number % 2 else None
    receivers.answered.clear()
    with httpx.Client(base_url=server.base_url, timeout=30) as admin:
        ids = {name: _register(admin, f"{receivers.base_url}/{name}") for name in NAMES}
        settle()
        announce(f"round {number}: hot coupon, 5 endpoints on every event")
        hooked = run_wrk(claim_url, load, HOT.wrk_args(f"h{uuid.uuid4().hex[:6]}-"))
        at_end = _states(admin)
        announce(f"round {number}: draining (at most {DRAIN_MAX_S:g} s)")
        started, before = time.monotonic(), dict(receivers.answered)
        drained = _drain(admin, {name: ids[name] for name in DRAINING})
        watched, left = time.monotonic() - started, _states(admin)
        for webhook_id in ids.values():
            admin.delete(f"/api/webhooks/{webhook_id}").raise_for_status()
    plain = first or plain_run()
    ends = [
        EndpointEnd(name, at_end[i]["backlog"], at_end[i]["lag_seconds"], drained.get(name),
                    receivers.answered.get(name, 0), left[i]["backlog"], watched,
                    receivers.answered.get(name, 0) - before.get(name, 0))
        for name, i in ids.items()
    ]  # fmt: skip
    return WebhookRound(plain, hooked, ends, plain_first=first is not None)


def _settle(url: str) -> None:
    asyncio.run(settle_database(url))


def _register(admin: httpx.Client, url: str) -> int:
    response = admin.post("/api/webhooks", json={"url": url})
    response.raise_for_status()
    webhook_id: int = response.json()["id"]
    return webhook_id


def _states(admin: httpx.Client) -> dict[int, dict[str, Any]]:
    listed = admin.get("/api/webhooks", params={"limit": "1000"}).json()["webhooks"]
    return {webhook["id"]: webhook for webhook in listed}


def _drain(admin: httpx.Client, ids: dict[str, int]) -> dict[str, float]:
    """Seconds until each endpoint had nothing left (checked each 0.5 s)."""
    start, drained = time.monotonic(), dict[str, float]()
    while len(drained) < len(ids) and time.monotonic() - start < DRAIN_MAX_S:
        states = _states(admin)
        for name, webhook_id in ids.items():
            if name not in drained and states[webhook_id]["backlog"] == 0:
                drained[name] = time.monotonic() - start
        time.sleep(0.5)
    return drained


def render_rounds(rounds: list[WebhookRound]) -> Table:
    """One row per round: claims/s plain and hooked, their ratio, then each
    endpoint's backlog, lag and drain time."""
    table = Table(
        title="hot coupon: plain vs 5 webhook endpoints on every event",
        caption=_medians(rounds),
    )
    for column in ("round", "first", "plain claims/s", "hooked claims/s", "hooked/plain",
                   *NAMES):  # fmt: skip
        table.add_column(column, justify="right")
    for number, done in enumerate(rounds, 1):
        table.add_row(
            str(number),
            "plain" if done.plain_first else "hooked",
            f"{done.plain.ok_per_s:,.0f}",
            f"{done.hooked.ok_per_s:,.0f}",
            f"{done.ratio:.0%}",
            *(_endpoint_cell(end) for end in done.endpoints),
        )
    return table


def _medians(rounds: list[WebhookRound]) -> str:
    """The median hooked/plain ratio of all rounds, and by which run went first."""
    parts = []
    for label, chosen in (
        ("all rounds", rounds),
        ("plain first", [done for done in rounds if done.plain_first]),
        ("hooked first", [done for done in rounds if not done.plain_first]),
    ):
        ratio = median_ratio(chosen)
        if ratio is not None:
            parts.append(f"{label}: {ratio:.0%} ({len(chosen)})")
    settings = load_settings()
    return (
        "median hooked/plain, " + "; ".join(parts) + f". WEBHOOK_DELIVERY="
        f"{settings.webhook_delivery}, WEBHOOK_BATCH_MAX={settings.webhook_batch_max}"
    )


def _endpoint_cell(end: EndpointEnd) -> str:
    """Backlog and lag at the load's end; the drain time (measured, or
    extrapolated at the drain's rate: "~"), the rate, events answered."""
    lag = "-" if end.lag_s is None else f"{end.lag_s:.1f} s"
    estimate = end.drain_estimate_s
    if end.name not in DRAINING:
        return f"{end.backlog:,} behind, lag {lag}\nnever drains: answers past WEBHOOK_TIMEOUT"
    if end.drained_s is not None:
        drained = f"drained in {end.drained_s:.0f} s"
    elif estimate is not None:
        drained = f"drains in ~{estimate:.0f} s"
    else:
        drained = "does not drain"
    return (
        f"{end.backlog:,} behind, lag {lag}\n{drained} at {end.rate:,.0f}/s, "
        f"{end.delivered:,} events answered"
    )
