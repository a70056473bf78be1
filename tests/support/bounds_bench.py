"""What http/bounds.py costs a request, in CPU: the service's ASGI app, in
this process, answering the no-database claim (``POST /bench/claim-ceiling``:
the claim route's parsing, rules and answer, minus the database) through
RequestObserver -> Bounds -> ClaimEndpoint, against the same app with the
Bounds layer taken out, in alternating rounds on one event loop (uvloop,
as the workers run). Development only:

    uv run python -m tests.support.bounds_bench [--rounds 20] [--requests 20000] \\
        [--baseline main]

``--baseline REF`` adds a third variant: http/bounds.py as it is at git
REF (loaded from ``git show``), around the same inner app.

Granian's receive and send return futures that are usually done at once;
here they are asyncio futures already done, so a request never waits and
the sweeper (every 0.5 s) almost never runs: what is measured is the
per-request path, which is what the layer adds to every claim."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import uvloop

from flashsale.config import load_settings
from flashsale.http.app import build_app
from flashsale.http.bounds import Bounds
from flashsale.http.observability import RequestObserver
from flashsale.service.services import Services

BODY = b'{"user_id":"bench-user","coupon_name":"HOT"}'
HEADERS = [
    (b"host", b"127.0.0.1:8080"),
    (b"content-type", b"application/json"),
    (b"content-length", str(len(BODY)).encode()),
]
SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0", "spec_version": "2.3"},
    "http_version": "1.1",
    "method": "POST",
    "scheme": "http",
    "path": "/bench/claim-ceiling",
    "raw_path": b"/bench/claim-ceiling",
    "query_string": b"",
    "root_path": "",
    "headers": HEADERS,
    "client": ("127.0.0.1", 40000),
    "server": ("127.0.0.1", 8080),
}


@asynccontextmanager
async def _no_services() -> AsyncIterator[Services]:
    yield cast(Services, None)  # the ceiling route reads no service


async def _requests(app: Any, count: int) -> float:
    """CPU seconds for ``count`` requests, one after the other."""
    loop = asyncio.get_running_loop()
    message = {"type": "http.request", "body": BODY, "more_body": False}
    statuses: list[int] = []

    def receive() -> asyncio.Future[Any]:
        done = loop.create_future()
        done.set_result(message)
        return done

    def send(sent: dict[str, Any]) -> asyncio.Future[None]:
        if sent["type"] == "http.response.start":
            statuses.append(sent["status"])
        done = loop.create_future()
        done.set_result(None)
        return done

    started = time.process_time()
    for _ in range(count):
        await app({**SCOPE, "state": {}}, receive, send)
    spent = time.process_time() - started
    assert statuses == [200] * count, set(statuses)
    return spent


def bounds_at(ref: str) -> ModuleType:
    """http/bounds.py as it is at git ``ref``, imported under another name."""
    source = subprocess.run(
        ["git", "show", f"{ref}:src/flashsale/http/bounds.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "baseline_bounds.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("baseline_bounds", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["baseline_bounds"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


async def _compare(rounds: int, count: int, baseline: str | None) -> dict[str, list[float]]:
    settings = load_settings({"FLASHSALE_BENCH_ROUTES": "true", "CLAIM_RATE": "0"})
    app = build_app(settings, _no_services)
    async with app.lifespan():
        bounded = cast(RequestObserver, app.asgi_handler)
        layer = cast(Bounds, bounded.app)
        variants = {"with Bounds": bounded, "without": RequestObserver(layer.app, access=False)}
        if baseline is not None:
            older = bounds_at(baseline).Bounds(layer.app, layer.limits)
            variants[f"at {baseline}"] = RequestObserver(older, access=False)
        for variant in variants.values():  # warm-up
            await _requests(variant, count // 10)
        per_request: dict[str, list[float]] = {name: [] for name in variants}
        for round_number in range(rounds):
            order = list(variants) if round_number % 2 == 0 else list(reversed(variants))
            for name in order:
                per_request[name].append(await _requests(variants[name], count) / count * 1e6)
    return per_request


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--baseline", help="git ref of another http/bounds.py to compare")
    options = parser.parse_args()
    found = uvloop.run(_compare(options.rounds, options.requests, options.baseline))
    without = found.pop("without")
    print(f"{'without':14} median {statistics.median(without):6.2f} us/request")
    for name, values in found.items():
        added = sorted(a - b for a, b in zip(values, without, strict=True))
        print(
            f"{name:14} median {statistics.median(values):6.2f} us/request; adds"
            f" {statistics.median(added):5.2f} us per round pair (quartiles"
            f" {added[len(added) // 4]:.2f} .. {added[3 * len(added) // 4]:.2f}),"
            f" {statistics.median(values) / statistics.median(without) - 1:+.1%}"
        )


if __name__ == "__main__":
    main()
