"""``flashsale bench --attack``: the hot coupon under attack. One server, one
database (the hot coupon, a 10-unit coupon SMALL, and BIG with 150,000
claimers); the hot coupon under wrk three times in the same run: plain,
while bench/attacker.py (a process of its own) holds 4,000 half-sent claim
bodies, 300 dashboard streams and 10 readers of BIG at 2 KB/s, and again
once the attacker has left (after a 3 s warm-up, not reported). Throughout
each, a probe opens a new connection every 50 ms for
``GET /api/coupons/SMALL`` (its p99, and how many failed),
and each worker's resident memory is sampled. After the run under attack
the attacker keeps its connections until the server has cut every
half-sent one or 60 s have passed since they were all open. What the
server counted meanwhile (``flashsale_requests_cut_total`` by reason, from
its /metrics) is reported beside what the attacker saw, and once it has
left, what the server still holds (bench/held.py: connections, requests,
streams, spooled bytes, pool connections), read until nothing is.

Both this process and the attacker raise their RLIMIT_NOFILE soft limit to
what the sockets need (the server inherits the bench's)."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec
from rich.table import Table

from flashsale.bench.attacker import CUT_WINDOW_S, SOCKET_SLACK, raise_descriptor_limit
from flashsale.bench.cpu import cpu_seconds, process_tree
from flashsale.bench.database import create_fresh_database, drop_database
from flashsale.bench.held import Held, wait_until_back
from flashsale.bench.huge_coupon import rss_mb
from flashsale.bench.report import Target
from flashsale.bench.scenarios import HOT
from flashsale.bench.server import RunningServer, start_server
from flashsale.bench.wrk import Load, WrkResult, run_wrk
from flashsale.storage.admin import seed_coupon

BIG, BIG_CLAIMERS = "BIG", 150_000
SMALL, SMALL_AMOUNT = "SMALL", 10
HALF_SENT, STREAMS, SLOW_READERS, READ_RATE = 4000, 300, 10, 2048
PROBE_EVERY_S = 0.008  # ~1,000 probes in an 8 s phase, on schedule
PROBE_TIMEOUT_S = 10.0
READY_LIMIT_S = 180.0
WARM_UP = Load(connections=64, threads=2, duration_s=3)  # not reported
# A sample line of /metrics (read as text: the bench's own process must not
# import prometheus_client, flashsale/metrics.py).
_CUT_SAMPLE = re.compile(r'^flashsale_requests_cut_total\{reason="(\w+)"\} ([0-9.e+]+)$', re.M)

Announce = Callable[[str], None]


@dataclass
class Probe:
    """Latencies of GET /api/coupons/SMALL, each on a new connection, from
    bench/prober.py; and how late the prober started each (its own delay)."""

    seconds: list[float] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)  # status or error
    late: list[float] = field(default_factory=list)

    def ms(self, share: float, of: str = "seconds") -> float | None:
        """The ``share`` percentile (0.5, 0.99, 1.0 for the largest), in ms."""
        values: list[float] = getattr(self, of)
        if not values:
            return None
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(len(ordered) * share))] * 1000

    @property
    def p99_ms(self) -> float | None:
        return self.ms(0.99)


@dataclass(frozen=True, slots=True)
class Phase:
    name: str
    wrk: WrkResult
    probe: Probe
    peak_rss_mb: float  # the largest worker's
    cpu_s: dict[str, float] = field(default_factory=dict)  # CPU seconds by party


@dataclass(frozen=True, slots=True)
class AttackRun:
    plain: Phase
    attacked: Phase
    after: Phase
    ready: dict[str, Any]  # the attacker's counts once its connections were open
    report: dict[str, Any]  # and when it left
    descriptors: str | None  # what the bench did to its RLIMIT_NOFILE
    cuts: dict[str, int] = field(default_factory=dict)  # the server's, while attacked
    held: Held | None = None  # what the server held once the attacker had left

    @property
    def ratio(self) -> float:
        return self.attacked.wrk.ok_per_s / max(self.plain.wrk.ok_per_s, 1e-9)


def run_attack_bench(
    server_url: str, workdir: Path, load: Load, workers: int, announce: Announce
) -> AttackRun:
    announce(f"seeding {BIG} with {BIG_CLAIMERS:,} claimers")
    url = asyncio.run(create_fresh_database(server_url, (HOT,)))
    asyncio.run(seed_coupon(url, BIG, BIG_CLAIMERS, claims=BIG_CLAIMERS))
    asyncio.run(seed_coupon(url, SMALL, SMALL_AMOUNT))
    descriptors = raise_descriptor_limit(HALF_SENT + STREAMS + SLOW_READERS + 2 * SOCKET_SLACK)
    server = start_server(url, workdir / "server-attack.log", workers=workers)
    try:
        announce("warming up the workers")
        run_wrk(server.base_url + HOT.path, WARM_UP, HOT.wrk_args("w-"))
        plain = phase(server, load, "plain", announce)
        before = server_cuts(server.base_url)
        with attacker(server, announce) as (ready, finish, pid):
            attacked = phase(server, load, "under attack", announce, {"attacker": pid})
            announce(f"waiting until every half-sent body is cut (at most {CUT_WINDOW_S:g} s)")
            report = finish()
        announce("reading what the server still holds")
        held = wait_until_back(server.base_url, since=time.monotonic())
        cuts = server_cuts(server.base_url)
        after = phase(server, load, "after the attack", announce)
    finally:
        server.stop()
        asyncio.run(drop_database(server_url, url))
    moved = {reason: n - before.get(reason, 0) for reason, n in cuts.items()}
    return AttackRun(plain, attacked, after, ready, report, descriptors, moved, held)


def server_cuts(base_url: str) -> dict[str, int]:
    """The server's ``flashsale_requests_cut_total`` by reason ({} if refused)."""
    answer = httpx.get(f"{base_url}/metrics", timeout=PROBE_TIMEOUT_S)
    if answer.status_code != 200:
        return {}
    return {reason: int(float(n)) for reason, n in _CUT_SAMPLE.findall(answer.text)}


def phase(
    server: RunningServer, load: Load, name: str, announce: Announce,
    others: dict[str, int] | None = None,
) -> Phase:  # fmt: skip
    """wrk's run of the hot coupon, the prober's and the memory sampler's
    beside it; CPU seconds of the server, the prober and ``others`` (name:
    pid, e.g. the attacker's) meanwhile."""
    announce(f"hot coupon, {name}")
    prober = _start_prober(server.base_url)
    stop, peaks = threading.Event(), dict[int, float]()
    sampler = threading.Thread(target=_sample, args=(server.worker_pids(), peaks, stop))
    parties = {"server": server.process.pid, "prober": prober.pid, **(others or {})}
    before = _cpu(parties)
    sampler.start()
    try:
        result = run_wrk(
            server.base_url + HOT.path, load, HOT.wrk_args(f"a{uuid.uuid4().hex[:6]}-")
        )
    finally:
        stop.set()
        sampler.join()
        after = _cpu(parties)
        probe = _stop_prober(prober)
    cpu = {party: after[party] - before[party] for party in parties}
    return Phase(name, result, probe, max(peaks.values(), default=0.0), cpu)


def _cpu(parties: dict[str, int]) -> dict[str, float]:
    return {party: sum(map(cpu_seconds, process_tree(pid))) for party, pid in parties.items()}


def _start_prober(base_url: str) -> subprocess.Popen[bytes]:
    """bench/prober.py: a process of its own, in the bench's session like the
    server and wrk (so it shares their autogroup's CPU share, no more)."""
    host, port = base_url.removeprefix("http://").rsplit(":", 1)
    command = [sys.executable, "-m", "flashsale.bench.prober", "--host", host, "--port", port,
               "--path", f"/api/coupons/{SMALL}", "--every", str(PROBE_EVERY_S)]  # fmt: skip
    return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # noqa: S603


def _stop_prober(prober: subprocess.Popen[bytes]) -> Probe:
    """Closing its stdin ends it; it prints its samples once its probes in
    flight are answered (each within its timeout)."""
    output, _ = prober.communicate(timeout=PROBE_TIMEOUT_S + 30)
    found = msgspec.json.decode(output)["probes"]
    return Probe(found["seconds"], found["failures"], found["late"])


def _sample(pids: list[int], peaks: dict[int, float], stop: threading.Event) -> None:
    while True:
        for pid in pids:
            with contextlib.suppress(OSError):
                peaks[pid] = max(peaks.get(pid, 0.0), rss_mb(pid))
        if stop.wait(0.5):
            return


@contextlib.contextmanager
def attacker(
    server: RunningServer, announce: Announce, source: str | None = None
) -> Iterator[tuple[dict[str, Any], Callable[[], dict[str, Any]], int]]:
    """The attacker (from ``source``, a local address, if given), once its
    connections are open: its ready line, a call that waits for every
    half-sent body to be cut (or the window to pass since they were open),
    sends it away and returns its report, and its pid. It runs in the
    bench's session, as the server and wrk do: one autogroup, so its CPU
    comes out of their share (docs/benchmarks.md, "Under attack")."""
    port = server.base_url.rsplit(":", 1)[1]
    command = [sys.executable, "-m", "flashsale.bench.attacker", "--port", port,
               "--half-sent", str(HALF_SENT), "--streams", str(STREAMS),
               "--slow-readers", str(SLOW_READERS), "--big", BIG,
               "--read-rate", str(READ_RATE),
               *(["--source", source] if source else [])]  # fmt: skip
    announce(f"attacker: opening {HALF_SENT:,} half-sent claims, {STREAMS} streams, "
             f"{SLOW_READERS} slow readers")  # fmt: skip
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    lines = _lines(process)
    try:
        ready = _next(lines, "ready", READY_LIMIT_S)
        opened_at = time.monotonic()

        def finish() -> dict[str, Any]:
            with contextlib.suppress(TimeoutError):
                _next(lines, "all_cut", max(0.0, opened_at + CUT_WINDOW_S - time.monotonic()))
            assert process.stdin is not None
            process.stdin.close()  # the attacker's signal to leave
            return _next(lines, "report", 120)

        yield ready, finish, process.pid
    finally:
        if process.poll() is None:
            process.terminate()
        process.wait(timeout=120)


def _lines(process: subprocess.Popen[bytes]) -> queue.Queue[dict[str, Any]]:
    found: queue.Queue[dict[str, Any]] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            found.put(msgspec.json.decode(line))

    threading.Thread(target=read, daemon=True).start()
    return found


def _next(lines: queue.Queue[dict[str, Any]], kind: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if kind in line:
            value: dict[str, Any] = line[kind]
            return value
    raise TimeoutError(f"the attacker printed no {kind!r} line within {timeout:g} s")


def render_attack(run: AttackRun) -> Table:
    table = Table(title="hot coupon under attack (same server, same run)")
    for column in ("phase", "claims/s", "vs plain", "claim p99", "GET SMALL p50 / p99 / max",
                   "probes", "failed", "prober late p99", "largest worker RSS"):  # fmt: skip
        table.add_column(column, justify="right")
    for done in (run.plain, run.attacked, run.after):
        probe = done.probe
        failed = ", ".join(f"{n} {why}" for why, n in probe.failures.items()) or "0"
        table.add_row(
            done.name,
            f"{done.wrk.ok_per_s:,.0f}",
            f"{done.wrk.ok_per_s / max(run.plain.wrk.ok_per_s, 1e-9):.0%}",
            f"{done.wrk.p99_ms:,.0f} ms" if done.wrk.requests else "- (none answered)",
            " / ".join(_ms(probe.ms(share)) for share in (0.5, 0.99, 1.0)),
            f"{len(probe.seconds):,}",
            failed,
            _ms(probe.ms(0.99, "late")),
            f"{done.peak_rss_mb:,.0f} MB",
        )
    return table


def attack_targets(run: AttackRun) -> list[Target]:
    """Issue 25's targets, each against this run."""
    attacked, probe = run.attacked, run.attacked.probe
    cut, opened = run.report["half_sent_cut_within_60s"], run.report["half_sent_open"]
    largest = max(done.peak_rss_mb for done in (run.plain, run.attacked, run.after))
    small_p99 = probe.p99_ms
    return [
        Target("under attack: claims/s >= 80% of plain", f"{run.ratio:.0%}", run.ratio >= 0.8),
        Target(
            "under attack: claim p99 <= 100 ms",
            _ms(attacked.wrk.p99_ms),
            attacked.wrk.p99_ms <= 100,
        ),
        Target(
            "under attack: GET of a small coupon, p99 <= 100 ms",
            _ms(small_p99),
            small_p99 is not None and small_p99 <= 100 and not probe.failures,
        ),
        Target("no worker above 1 GB", f"{largest:,.0f} MB", largest < 1024),
        Target(
            f"every half-sent body cut within {CUT_WINDOW_S:g} s",
            f"{cut:,} of {opened:,}",
            cut == opened,
        ),
        Target(
            "after the attack: every connection and slot back",
            str(run.held) if run.held else "not read",
            run.held is not None and run.held.back,
        ),
    ]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} ms"


def attack_lines(run: AttackRun) -> list[str]:
    """What the attacker saw: connections opened, cut, and answered."""
    ready, report = run.ready, run.report
    cut = report["half_sent_cut_within_60s"]
    most = report["half_sent_cut_max_s"]
    return [
        f"half-sent claims: {report['half_sent_open']:,} open, {report['half_sent_failed']:,} "
        f"failed to open; cut by the server within {CUT_WINDOW_S:g} s: {cut:,} of "
        f"{report['half_sent_open']:,}"
        + ("" if most is None else f" (last after {most:.1f} s)")
        + f"; answers {report['half_sent_answers']}",
        f"streams: {ready['streams']} at opening, {report['streams_ended_by_server']} ended "
        "by the server",
        f"slow readers: {ready['readers']} at opening, {report['readers_ended']} ended by the "
        f"server, bytes read {report['reader_bytes']}",
        *([f"descriptors: {run.descriptors}"] if run.descriptors else []),
        *([_counted(run.cuts)] if run.cuts else []),
        *([run.held.line()] if run.held else []),
        *(_cpu_line(done) for done in (run.plain, run.attacked, run.after)),
    ]


def _cpu_line(done: Phase) -> str:
    spent = ", ".join(f"{party} {seconds:.2f}" for party, seconds in done.cpu_s.items())
    return f"CPU seconds, {done.name} ({done.wrk.duration_s:.1f} s of wrk): {spent}"


def _counted(cuts: dict[str, int]) -> str:
    moved = ", ".join(f"{reason} {n:,}" for reason, n in cuts.items() if n) or "none"
    return f"the server's cuts while attacked (flashsale_requests_cut_total): {moved}"
