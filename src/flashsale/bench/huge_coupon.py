"""Benchmark: read a coupon with a million claimers over HTTP.

    uv run python -m flashsale.bench.huge_coupon [--claims N] [--database-url URL]

Seeds one coupon with N claims (admin.sql's seed_claims, one statement), starts
``flashsale serve`` with one worker (so the measured worker is the one that
answers), and reports the time to the full body, the time to the first byte
and how much the worker's resident memory grew while it streamed the body.
Without --database-url it runs on a throwaway embedded PostgreSQL."""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import msgspec

from flashsale.bench.server import start_server
from flashsale.storage.admin import database_url, drop_database, seed_coupon
from flashsale.storage.database import migrate
from flashsale.storage.embedded import start_embedded

COUPON = "HUGE"


@dataclass(frozen=True, slots=True)
class Reading:
    seconds_to_body: float
    seconds_to_first_byte: float
    body_bytes: int
    rss_before_mb: float
    rss_peak_mb: float
    claimers: int

    @property
    def growth_mb(self) -> float:
        return self.rss_peak_mb - self.rss_before_mb


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class PeakSampler:
    """Samples a process's RSS every 10 ms in a thread; remembers the peak."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = rss_mb(pid)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._done.wait(0.01):
            self.peak = max(self.peak, rss_mb(self.pid))

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb(self.pid))


def read_coupon(base_url: str, pid: int) -> Reading:
    before = rss_mb(pid)
    with PeakSampler(pid) as sampler:
        started = time.perf_counter()
        with urllib.request.urlopen(f"{base_url}/api/coupons/{COUPON}", timeout=60) as response:  # noqa: S310 - our own server
            first = response.read(1)
            first_byte = time.perf_counter() - started
            body = first + response.read()
        elapsed = time.perf_counter() - started
    claimers = len(msgspec.json.decode(body)["claimed_by"])
    return Reading(elapsed, first_byte, len(body), before, sampler.peak, claimers)


async def seed(url: str, claims: int) -> None:
    await migrate(url)
    await seed_coupon(url, COUPON, claims, claims=claims)


def run(server_url: str, claims: int, rounds: int, workdir: Path) -> list[Reading]:
    url = database_url(server_url, f"flashsale_huge_{uuid.uuid4().hex[:8]}")
    started = time.perf_counter()
    asyncio.run(seed(url, claims))
    print(f"seeded {claims:,} claims in {time.perf_counter() - started:.1f} s")
    server = start_server(url, workdir / "server.log", workers=1)
    try:
        pid = server.worker_pids()[0]
        return [read_coupon(server.base_url, pid) for _ in range(rounds)]
    finally:
        server.stop()
        asyncio.run(drop_database(server_url, url))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url", help="a PostgreSQL server (default: embedded)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="flashsale-huge-") as tmp:
        workdir = Path(tmp)
        server_url = args.database_url or start_embedded(workdir / "pg", cleanup="delete")
        readings = run(server_url, args.claims, args.rounds, workdir)
    print("| round | claimers | body | first byte | full body | RSS before | peak | growth |")
    print("|---|---|---|---|---|---|---|---|")
    for i, r in enumerate(readings, 1):
        print(
            f"| {i} | {r.claimers:,} | {r.body_bytes / 1e6:.1f} MB | "
            f"{r.seconds_to_first_byte * 1000:.0f} ms | {r.seconds_to_body:.2f} s | "
            f"{r.rss_before_mb:.0f} MB | {r.rss_peak_mb:.0f} MB | {r.growth_mb:+.0f} MB |"
        )


if __name__ == "__main__":
    main()
