"""The bench rows of issue 24 (docs/benchmarks.md, "Claimers with an
identity"): the hot coupon with every claimer new and carrying its own RS256
token (no cache hit), and with HS256 claim tokens, against the plain hot
coupon, on this branch and on a baseline checkout (main), in alternating
rounds, server and wrk in this one session. Development only:

    uv run python -m tests.support.jwt_bench --baseline /tmp/main-20ffb54 \\
        [--rounds 3] [--duration 5] [--database postgresql://postgres@127.0.0.1:5432/postgres] \\
        [--baseline-tokens]

``--baseline-tokens`` (a baseline that verifies tokens too) adds the row
"main: hot coupon, HS256 claim tokens": the HS256 row before and after.

Also prints the per-token verification cost (http/end_users.py, in this
process, one core)."""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

import httpx

from flashsale.bench.cpu import Parties, measure_cpu
from flashsale.bench.server import RunningServer, free_port, wait_until_ready
from flashsale.bench.wrk import Load, WrkResult, run_wrk
from flashsale.config import load_settings
from flashsale.http.end_users import EndUsers
from tests.support.jwts import jwt_settings, mint, mint_hs256, public_pem

ADMIN = "bench-admin-token-0123456789"
THREADS = 2


def launch(python: str, cwd: Path, env: Mapping[str, str], log: Path) -> RunningServer:
    port = free_port()
    environment = {
        "PATH": "/usr/bin:/bin",
        "APP_HOST": "127.0.0.1",
        "APP_PORT": str(port),
        "WEB_WORKERS": "2",
        "LOG_LEVEL": "warning",
        "ADMIN_TOKEN": ADMIN,
        **env,
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [python, "-m", "flashsale", "serve"], env=environment, stdout=out, stderr=out, cwd=cwd
        )
    server = RunningServer(process, f"http://127.0.0.1:{port}", log)
    environment_ready(server)
    return server


def environment_ready(server: RunningServer) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(server.base_url + "/health", timeout=2).status_code == 200:
                time.sleep(1.0)  # both workers' pools
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    wait_until_ready(server, 2, 1)


def create(server: RunningServer, name: str) -> None:
    answer = httpx.post(
        server.base_url + "/api/coupons",
        json={"name": name, "amount": 1_000_000_000},
        headers={"authorization": f"Bearer {ADMIN}"},
        timeout=30,
    )
    assert answer.status_code == 201, answer.text


def _mint_rs256(subs: list[str]) -> list[str]:
    return [mint(sub) for sub in subs]


def token_files(folder: Path, name: str, count: int, make: Callable[[list[str]], list[str]]) -> str:
    """<folder>/<name>.<thread>: ``count`` tokens of new subs, split by thread."""
    run = uuid.uuid4().hex[:6]
    subs = [f"{name}-{run}-{i}" for i in range(count)]
    chunks = [subs[i::8] for i in range(8)]
    with multiprocessing.get_context("fork").Pool(2) as pool:
        tokens = [t for chunk in pool.map(make, chunks) for t in chunk]
    prefix = folder / name
    for thread in range(1, THREADS + 1):
        Path(f"{prefix}.{thread}").write_text("\n".join(tokens[thread - 1 :: THREADS]) + "\n")
    return str(prefix)


def hot(
    server: RunningServer, coupon: str, load: Load, extra: list[str]
) -> tuple[WrkResult, float]:
    """The run, and the server's CPU microseconds per request (its workers'
    utime + stime: steadier than the rate on a shared machine)."""
    with measure_cpu(Parties(servers=(server.process.pid,), postmaster=None)) as meter:
        result = run_wrk(
            server.base_url + "/api/coupons/claim",
            load,
            [coupon, "/api/coupons/claim", f"u{uuid.uuid4().hex[:6]}-", *extra],
        )
    return result, meter.split.server * 1e6 / max(result.requests, 1)


def verification_cost(folder: Path) -> dict[str, float]:
    """Microseconds per first verification (no cache hit), one core."""
    key = folder / "cost.pem"
    key.write_bytes(public_pem())
    users = EndUsers(load_settings(jwt_settings(key_file=key)))
    costs = {}
    for label, tokens in (
        ("RS256", [mint(f"c-{i}") for i in range(2000)]),
        ("HS256", [mint_hs256(f"h-{i}") for i in range(2000)]),
    ):
        started = time.perf_counter()
        for token in tokens:
            users.verify(token, None)
        costs[label] = (time.perf_counter() - started) / len(tokens) * 1e6
        hit = time.perf_counter()
        for token in tokens:
            users.verify(token, None)
        costs[label + " cached"] = (time.perf_counter() - hit) / len(tokens) * 1e6
    return costs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=256)
    parser.add_argument("--database", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--baseline-tokens", action="store_true")
    parser.add_argument("--no-rs256", action="store_true", help="skip the RS256 row (and minting)")
    arguments = parser.parse_args()
    load = Load(arguments.connections, THREADS, arguments.duration)
    here = Path(__file__).resolve().parents[2]
    rows: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="jwt-bench-") as tmp:
        folder = Path(tmp)
        print("per-token verification, us:", verification_cost(folder), flush=True)
        key = folder / "bench.pem"
        key.write_bytes(public_pem())
        tag = uuid.uuid4().hex[:6]
        branch_env = {
            "DATABASE_URL": f"{arguments.database}/jwtbench_b_{tag}",
            "CLAIM_AUTH": "user",
            **jwt_settings(key_file=key),
        }
        base_env = {"DATABASE_URL": f"{arguments.database}/jwtbench_m_{tag}"}
        main_server = launch(
            str(arguments.baseline / ".venv/bin/python"),
            arguments.baseline,
            base_env,
            folder / "main.log",
        )
        branch = launch(str(here / ".venv/bin/python"), here, branch_env, folder / "branch.log")
        open_env = {"DATABASE_URL": f"{arguments.database}/jwtbench_o_{tag}"}
        plain = launch(str(here / ".venv/bin/python"), here, open_env, folder / "open.log")
        main_tokens = None
        if arguments.baseline_tokens:
            tokens_env = {**branch_env, "DATABASE_URL": f"{arguments.database}/jwtbench_t_{tag}"}
            main_tokens = launch(
                str(arguments.baseline / ".venv/bin/python"),
                arguments.baseline,
                tokens_env,
                folder / "main-tokens.log",
            )
            create(main_tokens, "HS")
        try:
            for name in ("RS", "HS"):
                create(branch, name)
            create(main_server, "HOT")
            create(plain, "HOT")
            for round_number in range(1, arguments.rounds + 1):
                rs_count = 0 if arguments.no_rs256 else 14_000 * int(arguments.duration)
                rs = token_files(folder, f"rs{round_number}", rs_count, _mint_rs256)
                hs = token_files(
                    folder, f"hs{round_number}", 20_000 * int(arguments.duration), _mint_hs
                )
                runs = [
                    ("main: hot coupon", main_server, "HOT", []),
                    ("branch: hot coupon", plain, "HOT", []),
                    ("branch: hot coupon, RS256 claimers", branch, "RS", [f"tokens={rs}"]),
                    ("branch: hot coupon, HS256 claim tokens", branch, "HS", [f"tokens={hs}"]),
                ]
                if arguments.no_rs256:
                    runs = [run for run in runs if "RS256" not in run[0]]
                if main_tokens is not None:
                    runs.append(
                        (
                            "main: hot coupon, HS256 claim tokens",
                            main_tokens,
                            "HS",
                            [f"tokens={hs}"],
                        )
                    )
                for label, server, coupon, extra in runs:
                    result, cpu_us = hot(server, coupon, load, extra)
                    rows.setdefault(label, []).append(result.ok_per_s)
                    cpu.setdefault(label, []).append(cpu_us)
                    print(
                        f"round {round_number} {label}: {_described(result)}, "
                        f"server CPU {cpu_us:.0f} us a request",
                        flush=True,
                    )
        finally:
            for running in (main_server, branch, plain, main_tokens):
                if running is not None:
                    running.stop()
    for label, values in rows.items():
        print(f"{label}: median {statistics.median(values):,.0f} claims/s ({_listed(values)})")
    for label, values in cpu.items():
        print(f"{label}: server CPU median {statistics.median(values):,.0f} us a request")


def _described(result: WrkResult) -> str:
    return (
        f"{result.ok_per_s:,.0f} claims/s, p99 {result.p99_ms:.1f} ms, statuses {result.statuses}"
    )


def _listed(values: list[float]) -> str:
    return ", ".join(f"{value:,.0f}" for value in values)


def _mint_hs(subs: list[str]) -> list[str]:
    return [mint_hs256(sub) for sub in subs]


if __name__ == "__main__":
    main()
