"""The hostile clients of ``flashsale bench --attack``, in a process of their
own (``python -m flashsale.bench.attacker``) so that their CPU and sockets
are not the bench's:

- ``--half-sent`` connections each send a claim's headers with
  ``Content-Length: 50`` and one byte of body, then nothing;
- ``--streams`` open ``GET /dashboard/events`` streams, read as they come;
- ``--slow-readers`` read ``GET /api/coupons/<--big>`` at ``--read-rate``
  bytes a second (a small receive buffer, so the server feels it).

It prints one JSON line ``{"ready": ...}`` once every connection is open (or
has failed to), then holds them until SIGTERM or stdin closes, and prints
``{"report": ...}``: how many half-sent connections the server cut and how
soon, the streams' and readers' statuses. It bounds itself: it opens
connections 100 at a time and raises its own RLIMIT_NOFILE soft limit to
what it needs (within the hard limit; it says so when it has to)."""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import signal
import socket
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import msgspec

OPENING_AT_ONCE = 100
SOCKET_SLACK = 64  # descriptors beyond the sockets (interpreter, pipes)
CUT_WINDOW_S = 60.0  # the bench's target: every half-sent body cut within this


@dataclass
class Tally:
    half_sent_open: int = 0
    half_sent_failed: int = 0  # could not connect or send
    cut_after_s: list[float] = field(default_factory=list)
    answers: Counter[str] = field(default_factory=Counter)  # what the cut ones got
    streams: Counter[str] = field(default_factory=Counter)  # status line, or the error
    streams_ended: int = 0  # by the server
    readers: Counter[str] = field(default_factory=Counter)
    reader_bytes: list[int] = field(default_factory=list)
    readers_ended: int = 0  # by the server, before the whole body
    cut: asyncio.Event = field(default_factory=asyncio.Event)  # set at each cut


def raise_descriptor_limit(needed: int) -> str | None:
    """The soft RLIMIT_NOFILE up to ``needed`` (at most the hard limit);
    what was done, or None when nothing was needed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return None
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return f"RLIMIT_NOFILE soft limit raised from {soft} to {target} (hard {hard})"


def claim_headers(host: str) -> bytes:
    return (
        f"POST /api/coupons/claim HTTP/1.1\r\nHost: {host}\r\n"
        "Content-Type: application/json\r\nContent-Length: 50\r\n\r\n{"
    ).encode()


SOURCE: str | None = None  # --source: the address every connection comes from


async def open_socket(host: str, port: int, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket()
    sock.setblocking(False)
    if SOURCE is not None:
        sock.bind((SOURCE, 0))
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    try:
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
    except BaseException:
        sock.close()
        raise
    return sock


async def half_sent(host: str, port: int, tally: Tally, opening: asyncio.Semaphore) -> None:
    loop = asyncio.get_running_loop()
    try:
        async with opening:
            sock = await open_socket(host, port)
            await loop.sock_sendall(sock, claim_headers(host))
    except OSError:
        tally.half_sent_failed += 1
        return
    tally.half_sent_open += 1
    sent = time.monotonic()
    try:
        first = await loop.sock_recv(sock, 4096)
        while first and await loop.sock_recv(sock, 4096):
            pass  # an answer (408, 503, ...) then the close
        tally.answers[_status(first) or "closed"] += 1
    except OSError as error:
        tally.answers[type(error).__name__] += 1
    finally:
        sock.close()
    tally.cut_after_s.append(time.monotonic() - sent)
    tally.cut.set()


async def stream(host: str, port: int, tally: Tally, opening: asyncio.Semaphore) -> None:
    loop = asyncio.get_running_loop()
    request = f"GET /dashboard/events HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    try:
        async with opening:
            sock = await open_socket(host, port)
        await loop.sock_sendall(sock, request)
        first = await loop.sock_recv(sock, 4096)
        tally.streams[_status(first) or "closed"] += 1
        while first and await loop.sock_recv(sock, 65536):
            pass
        tally.streams_ended += 1
        sock.close()
    except OSError as error:
        tally.streams[type(error).__name__] += 1


async def slow_reader(
    host: str, port: int, path: str, rate: int, tally: Tally, opening: asyncio.Semaphore
) -> None:
    loop = asyncio.get_running_loop()
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    received = 0
    try:
        async with opening:
            sock = await open_socket(host, port, rcvbuf=4096)
        await loop.sock_sendall(sock, request)
        chunk = await loop.sock_recv(sock, rate)
        tally.readers[_status(chunk) or "closed"] += 1
        while chunk:
            received += len(chunk)
            await asyncio.sleep(1)
            chunk = await loop.sock_recv(sock, rate)
        tally.readers_ended += 1
        sock.close()
    except OSError as error:
        tally.readers[type(error).__name__] += 1
    finally:
        tally.reader_bytes.append(received)


def _status(first: bytes) -> str | None:
    line = first.split(b"\r\n", 1)[0].split(b" ")
    return line[1].decode("latin-1") if len(line) > 1 and line[0].startswith(b"HTTP/") else None


class Ready(msgspec.Struct):
    half_sent_open: int
    half_sent_failed: int
    streams: dict[str, int]
    readers: dict[str, int]
    descriptors: str | None


class Report(msgspec.Struct):
    half_sent_open: int
    half_sent_failed: int
    half_sent_cut: int  # by the server, within the run
    half_sent_cut_within_60s: int
    half_sent_cut_max_s: float | None
    half_sent_answers: dict[str, int]
    streams: dict[str, int]
    streams_ended_by_server: int
    readers: dict[str, int]
    readers_ended: int
    reader_bytes: list[int]


def report(tally: Tally) -> Report:
    cuts = tally.cut_after_s
    return Report(
        half_sent_open=tally.half_sent_open,
        half_sent_failed=tally.half_sent_failed,
        half_sent_cut=len(cuts),
        half_sent_cut_within_60s=sum(1 for s in cuts if s <= CUT_WINDOW_S),
        half_sent_cut_max_s=max(cuts) if cuts else None,
        half_sent_answers=dict(tally.answers),
        streams=dict(tally.streams),
        streams_ended_by_server=tally.streams_ended,
        readers=dict(tally.readers),
        readers_ended=tally.readers_ended,
        reader_bytes=sorted(tally.reader_bytes),
    )


def emit(kind: str, value: msgspec.Struct) -> None:
    sys.stdout.write(msgspec.json.encode({kind: value}).decode() + "\n")
    sys.stdout.flush()


async def attack(args: argparse.Namespace, descriptors: str | None) -> None:
    tally, opening = Tally(), asyncio.Semaphore(OPENING_AT_ONCE)
    host, port = args.host, args.port
    tasks = [
        *(asyncio.create_task(slow_reader(host, port, f"/api/coupons/{args.big}",
                                          args.read_rate, tally, opening))
          for _ in range(args.slow_readers)),
        *(asyncio.create_task(stream(host, port, tally, opening)) for _ in range(args.streams)),
        *(asyncio.create_task(half_sent(host, port, tally, opening))
          for _ in range(args.half_sent)),
    ]  # fmt: skip
    await _opened(tally, args)
    emit("ready", Ready(tally.half_sent_open, tally.half_sent_failed, dict(tally.streams),
                        dict(tally.readers), descriptors))  # fmt: skip
    watch = asyncio.create_task(_all_cut(tally))
    await _until_told_to_stop()
    watch.cancel()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    emit("report", report(tally))


async def _opened(tally: Tally, args: argparse.Namespace) -> None:
    """Every half-sent connection sent (or failed), every stream and reader
    answered (or failed), or 120 s."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done_half = tally.half_sent_open + tally.half_sent_failed >= args.half_sent
        done_streams = sum(tally.streams.values()) >= args.streams
        done_readers = sum(tally.readers.values()) >= args.slow_readers
        if done_half and done_streams and done_readers:
            return
        await asyncio.sleep(0.1)


class AllCut(msgspec.Struct):
    half_sent_cut: int
    max_s: float


async def _all_cut(tally: Tally) -> None:
    """Says so once the server has cut every half-sent connection (the
    bench then need not wait out the 60 s)."""
    while len(tally.cut_after_s) < tally.half_sent_open:
        tally.cut.clear()
        await tally.cut.wait()
    emit("all_cut", AllCut(len(tally.cut_after_s), max(tally.cut_after_s, default=0.0)))


async def _until_told_to_stop() -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    stdin = sys.stdin.fileno()

    def readable() -> None:
        if not os.read(stdin, 1):  # closed: the bench is done with us
            stop.set()

    loop.add_reader(stdin, readable)
    await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--half-sent", type=int, default=4000)
    parser.add_argument("--streams", type=int, default=300)
    parser.add_argument("--slow-readers", type=int, default=10)
    parser.add_argument("--big", default="BIG")
    parser.add_argument("--read-rate", type=int, default=2048, help="bytes a second per reader")
    parser.add_argument("--source", help="local address to connect from (e.g. 127.0.0.2)")
    args = parser.parse_args()
    global SOURCE  # one process, one source: set once, before any socket
    SOURCE = args.source
    needed = args.half_sent + args.streams + args.slow_readers + SOCKET_SLACK
    descriptors = raise_descriptor_limit(needed)
    asyncio.run(attack(args, descriptors))


if __name__ == "__main__":
    main()
