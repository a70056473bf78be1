"""Running wrk with the claim script and reading the line it prints."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import msgspec

RESULT_MARKER = "FLASHSALE_WRK "


class WrkError(RuntimeError):
    """wrk is missing, failed, or printed no result line."""


class _Errors(msgspec.Struct):
    connect: int
    read: int
    write: int
    timeout: int


class _Latency(msgspec.Struct):
    p50: float
    p99: float
    max: float
    mean: float


class _Line(msgspec.Struct):
    duration_us: int
    requests: int
    statuses: dict[int, int]
    errors: _Errors
    latency_us: _Latency


@dataclass(frozen=True, slots=True)
class WrkResult:
    duration_s: float
    requests: int
    statuses: dict[int, int]
    socket_errors: int
    p50_ms: float
    p99_ms: float

    @property
    def ok(self) -> int:
        """Answers that did what was asked: a claim's 200, a raffle entry's 202."""
        return self.statuses.get(200, 0) + self.statuses.get(202, 0)

    @property
    def ok_per_s(self) -> float:
        return self.ok / self.duration_s

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.duration_s


def parse_output(output: str) -> WrkResult:
    """The result line of claim.lua's done(), anywhere in wrk's output."""
    for line in output.splitlines():
        if line.startswith(RESULT_MARKER):
            raw = msgspec.json.decode(line[len(RESULT_MARKER) :], type=_Line)
            return WrkResult(
                duration_s=raw.duration_us / 1e6,
                requests=raw.requests,
                statuses=raw.statuses,
                socket_errors=sum(msgspec.structs.astuple(raw.errors)),
                p50_ms=raw.latency_us.p50 / 1000,
                p99_ms=raw.latency_us.p99 / 1000,
            )
    raise WrkError(f"wrk printed no result line:\n{output[-2000:]}")


@dataclass(frozen=True, slots=True)
class Load:
    """How hard to push: wrk's -c, -t and -d."""

    connections: int
    threads: int
    duration_s: float


def require_wrk() -> None:
    """wrk is a system package the bench does not install itself."""
    if shutil.which("wrk") is None:
        raise WrkError("wrk is not on PATH: install it (Debian: apt-get install wrk) and retry")


def wrk_command(script: Path, url: str, load: Load, args: list[str]) -> list[str]:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise WrkError("wrk is not on PATH")
    return [
        wrk,
        f"--connections={load.connections}",
        f"--threads={min(load.threads, load.connections)}",
        f"--duration={load.duration_s:g}s",
        "--timeout=10s",  # a slow answer is a latency, not a socket error
        f"--script={script}",
        url,
        "--",
        *args,
    ]


def run_wrk(url: str, load: Load, args: list[str]) -> WrkResult:
    with resources.as_file(resources.files("flashsale.bench").joinpath("claim.lua")) as script:
        command = wrk_command(script, url, load, args)
        done = subprocess.run(  # noqa: S603 - our own argv, no shell
            command, capture_output=True, text=True, timeout=load.duration_s + 60, check=False
        )
    if done.returncode != 0:
        raise WrkError(f"wrk exited with {done.returncode}:\n{done.stderr[-2000:]}")
    return parse_output(done.stdout)
