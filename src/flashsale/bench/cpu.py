"""CPU time per request of each party (server, PostgreSQL, PgBouncer,
HAProxy, wrk), read from
/proc: on a shared machine rates swing with the neighbours' load, CPU spent
per request much less, so it tells where the time goes in every run."""

from __future__ import annotations

import os
import resource
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

PROC = Path("/proc")
TICK_S = 1 / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class CpuSplit:
    """CPU seconds spent by each party during one wrk run."""

    server: float  # every instance's processes together
    postgres: float
    wrk: float
    pgbouncer: float | None = None  # None: not in this topology
    haproxy: float | None = None

    def per_request_us(self, requests: int) -> tuple[float, ...]:
        """server, pg, [pgbouncer], [haproxy], wrk: the parties present."""
        scale = 1e6 / max(requests, 1)
        hops = [v for v in (self.pgbouncer, self.haproxy) if v is not None]
        return tuple(v * scale for v in (self.server, self.postgres, *hops, self.wrk))


@dataclass
class CpuMeter:
    """Filled when the measured block ends."""

    split: CpuSplit = field(default_factory=lambda: CpuSplit(0.0, 0.0, 0.0))


@dataclass(frozen=True, slots=True)
class Parties:
    """The processes measured: the instances (each with its workers), and
    PgBouncer's and HAProxy's when the topology has them."""

    servers: tuple[int, ...]
    postmaster: int | None
    pgbouncer: int | None = None
    haproxy: int | None = None


def cpu_seconds(pid: int) -> float:
    """A local process's CPU seconds (utime + stime); 0 when it is not ours to read."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) * TICK_S  # utime + stime


def _children(pid: int) -> list[int]:
    try:
        return [
            int(c) for c in (PROC / str(pid) / "task" / str(pid) / "children").read_text().split()
        ]
    except OSError:
        return []


def process_tree(root: int) -> list[int]:
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo += _children(pid)
    return pids


def postmaster_pid(data_dir: Path) -> int | None:
    """The embedded server's postmaster (first line of postmaster.pid)."""
    try:
        return int((data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def postgres_pids(postmaster: int | None) -> list[int]:
    """The bench's own PostgreSQL when known (its backends come and go with
    the pools), else every local PostgreSQL process."""
    if postmaster is not None:
        return process_tree(postmaster)
    pids = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _snapshot(parties: Parties) -> dict[str, dict[int, float]]:
    trees = {
        "server": [pid for root in parties.servers for pid in process_tree(root)],
        "postgres": postgres_pids(parties.postmaster),
        "pgbouncer": process_tree(parties.pgbouncer) if parties.pgbouncer else [],
        "haproxy": process_tree(parties.haproxy) if parties.haproxy else [],
    }
    return {name: {pid: cpu_seconds(pid) for pid in pids} for name, pids in trees.items()}


def _spent(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(max(seconds - before.get(pid, 0.0), 0.0) for pid, seconds in after.items())


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@contextmanager
def measure_cpu(parties: Parties) -> Iterator[CpuMeter]:
    """CPU of the servers' processes, PostgreSQL's, PgBouncer's, HAProxy's and
    our finished children (wrk) while the block runs."""
    meter = CpuMeter()
    before, children = _snapshot(parties), _children_cpu()
    yield meter
    after = _snapshot(parties)
    spent = {name: _spent(before[name], after[name]) for name in after}
    meter.split = CpuSplit(
        server=spent["server"],
        postgres=spent["postgres"],
        wrk=_children_cpu() - children,
        pgbouncer=spent["pgbouncer"] if parties.pgbouncer else None,
        haproxy=spent["haproxy"] if parties.haproxy else None,
    )
