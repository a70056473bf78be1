"""``flashsale serve`` for the tests: the bench's start_server (a child
process, returned once healthy with every worker ready), with small pools."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TypedDict, Unpack

import httpx

from flashsale.bench.server import RunningServer, start_server

# Many servers share the suite's PostgreSQL; the metrics tests count on 8.
SMALL_POOLS = {"DB_POOL_MIN": "1", "DB_POOL_MAX": "8"}


class ServerOptions(TypedDict, total=False):
    """start_server's keywords other than ``env`` (its defaults apply)."""

    workers: int
    host: str
    new_session: bool
    timeout: float


class ServeOptions(ServerOptions, total=False):
    """serve's keywords: start_server's, and ``env`` over SMALL_POOLS."""

    env: Mapping[str, str] | None


def serve(
    database_url: str | None,
    log_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    **options: Unpack[ServerOptions],
) -> RunningServer:
    """start_server with SMALL_POOLS under ``env``; None: the embedded default."""
    return start_server(database_url, log_path, env={**SMALL_POOLS, **(env or {})}, **options)


@contextmanager
def served(
    database_url: str | None, log_path: Path, **options: Unpack[ServeOptions]
) -> Iterator[RunningServer]:
    """serve's server for the block; it must stop cleanly when the block ends."""
    server = serve(database_url, log_path, **options)
    try:
        yield server
    finally:
        assert server.stop() == 0


@contextmanager
def two_instances(
    database_url: str, folder: Path, *, workers: int
) -> Iterator[list[RunningServer]]:
    """Two ``flashsale serve`` processes on one database; each must stop cleanly."""
    live = [serve(database_url, folder / f"server{i}.log", workers=workers) for i in range(2)]
    yield live
    for server in live:
        assert server.stop() == 0


def read_until_closed(url: str, ended: list[str]) -> None:
    """Reads a stream the server holds open (a thread's target); ``ended``
    gets "closed" when the server ends it, else the error's type."""
    try:
        with httpx.stream("GET", url, timeout=30) as response:
            for _line in response.iter_lines():
                pass
        ended.append("closed")
    except httpx.HTTPError as error:
        ended.append(type(error).__name__)


def workers_killed_late(log: str, kill_timeout_s: float) -> list[str]:
    """Granian's "Killing worker" lines logged once its kill timeout had run
    out after it began shutting down: a worker that refused to stop. A line
    logged sooner is Granian's own race (a worker whose process is exiting is
    still reported alive for a moment after `join` returned), not a refusal."""
    events = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    stamps = [
        (event["event"], datetime.fromisoformat(event["timestamp"]))
        for event in events
        if isinstance(event.get("event"), str) and "timestamp" in event
    ]
    began = next((at for text, at in stamps if text == "Shutting down granian"), None)
    if began is None:
        return []
    return [
        text
        for text, at in stamps
        if text.startswith("Killing worker")
        and (at - began).total_seconds() >= kill_timeout_s - 0.5
    ]
