"""``flashsale bench --draw N``: a raffle of N entrants drawn on a fresh
database; the draw's wall time, PostgreSQL's CPU over it, and its longest
transaction (docs/benchmarks.md). Issue 27's bound: 1,000,000 entrants in
10 s, no transaction over about a second."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

from flashsale.bench.cpu import Parties, cpu_seconds, measure_cpu
from flashsale.service.draws import CHUNK
from flashsale.storage.admin import database_url, drop_database
from flashsale.storage.database import migrate
from flashsale.storage.draw_bench import DrawTiming, seed_raffle, timed_draw

AMOUNT = 1_000  # units: winners; everyone else is waitlisted
SEED = bytes(range(32))  # fixed: the same draw every run


@dataclass(frozen=True, slots=True)
class DrawBench:
    entries: int
    timing: DrawTiming
    postgres_cpu: float  # seconds, every PostgreSQL process of the embedded server


def run_draw_bench(server_url: str, postmaster: int | None, entries: int) -> DrawBench:
    return asyncio.run(_draw_bench(server_url, postmaster, entries))


async def _draw_bench(server_url: str, postmaster: int | None, entries: int) -> DrawBench:
    url = database_url(server_url, f"flashsale_draw_{uuid.uuid4().hex[:10]}")
    await migrate(url)
    try:
        await seed_raffle(url, "RAFFLE", AMOUNT, entries, SEED)
        with measure_cpu(Parties((), postmaster)) as meter:
            timing = await timed_draw(url, "RAFFLE", CHUNK, cpu_seconds)
        return DrawBench(entries, timing, meter.split.postgres)
    finally:
        await drop_database(server_url, url)


def draw_lines(bench: DrawBench) -> list[str]:
    t = bench.timing
    sound = t.placed == t.places_checked == bench.entries and t.claims == min(AMOUNT, t.placed)
    return [
        f"draw of {bench.entries:,} entrants ({AMOUNT:,} units, steps of {CHUNK:,} places)",
        f"  wall time            {t.wall:8.2f} s",
        f"  PostgreSQL CPU       {t.backend_cpu:8.2f} s drawing session, "
        f"{bench.postgres_cpu:.2f} s every process",
        f"  longest transaction  {t.longest:8.3f} s   ({t.steps} steps)",
        f"  placed {t.placed:,}, claims {t.claims:,}, waitlisted events {t.waitlisted:,}: "
        + ("ok" if sound else "WRONG"),
    ]
