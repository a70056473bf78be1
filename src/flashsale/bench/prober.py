"""The small read's probe of ``flashsale bench --attack``, in a process of its
own (``python -m flashsale.bench.prober``): ``GET <--path>`` on a new
connection every ``--every`` seconds, on a fixed schedule whatever the
answers take (a slow answer does not hold back the next probe, so a stall
is sampled by every probe it catches), until stdin closes; then one JSON
line ``{"probes": ...}``: each probe's seconds (from connect to the last
byte), the failures, and how late the prober itself started each probe (its
own scheduling delay: the clock starts when the probe starts, so this is
not in the latency, but it says whether the prober was starved).

Why a process, and why so little: the first probe was ``httpx.get`` in a
thread of the bench's own process. Each ``httpx.get`` builds a client, and
with it an SSL context from certifi's bundle: ~50 ms of CPU before the
request is sent, counted in the measured time (on a 2-core machine shared
with the server, wrk and PostgreSQL, 100 ms and more), and one probe at a
time after a 50 ms pause gave ~80 samples a phase, so its p99 was its
largest. Here a probe costs the client a connect, one write and the reads
until the server closes: ~0.2 ms of CPU on uvloop (0.4 ms on asyncio's own
loop), ~0.2 s of an 8 s phase at 125 probes a second."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from collections import Counter

import msgspec
import uvloop

TIMEOUT_S = 10.0


class Probes(msgspec.Struct):
    seconds: list[float]  # each probe's, failures included
    late: list[float]  # how late the prober started each, in seconds
    failures: dict[str, int]  # by status or error


def request(host: str, path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()


async def probe(host: str, port: int, ask: bytes) -> tuple[float, str | None]:
    """One GET on a new connection: its seconds, and its failure if any
    (a status other than 200, or the error's name)."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(TIMEOUT_S):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(ask)
                answer = await reader.read()  # until the server closes
            finally:
                writer.close()
    except (OSError, TimeoutError) as error:
        return time.perf_counter() - started, type(error).__name__
    took = time.perf_counter() - started
    status = answer[9:12]
    return took, None if status == b"200" else (status.decode("latin-1") or "closed")


class _Prober:
    def __init__(self, host: str, port: int, path: str) -> None:
        self.host, self.port = host, port
        self.ask = request(host, path)
        self.done = Probes([], [], {})
        self.failures: Counter[str] = Counter()

    async def once(self) -> None:
        took, failure = await probe(self.host, self.port, self.ask)
        self.done.seconds.append(took)
        if failure is not None:
            self.failures[failure] += 1

    async def run(self, every: float, stop: asyncio.Event) -> Probes:
        """A probe every ``every`` seconds until ``stop``; then waits for the
        probes in flight."""
        running: set[asyncio.Task[None]] = set()
        due = time.perf_counter()
        while not stop.is_set():
            self.done.late.append(max(time.perf_counter() - due, 0.0))
            task = asyncio.create_task(self.once())
            running.add(task)
            task.add_done_callback(running.discard)
            due += every
            await _sleep_until(due, stop)
        await asyncio.gather(*running)
        self.done.failures = dict(self.failures)
        return self.done


async def _sleep_until(due: float, stop: asyncio.Event) -> None:
    wait = due - time.perf_counter()
    if wait > 0:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), wait)


async def _probe_until_stdin_closes(host: str, port: int, path: str, every: float) -> Probes:
    stop = asyncio.Event()
    stdin = sys.stdin.fileno()

    def readable() -> None:
        if not os.read(stdin, 1):  # closed: the bench is done with us
            stop.set()

    asyncio.get_running_loop().add_reader(stdin, readable)
    return await _Prober(host, port, path).run(every, stop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--every", type=float, default=0.008, help="seconds between probes")
    args = parser.parse_args()
    # uvloop, as the server runs: half the CPU of asyncio's loop per probe.
    found = uvloop.run(_probe_until_stdin_closes(args.host, args.port, args.path, args.every))
    sys.stdout.write(msgspec.json.encode({"probes": found}).decode() + "\n")


if __name__ == "__main__":
    main()
