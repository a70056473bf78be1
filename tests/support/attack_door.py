"""``flashsale bench --attack`` through the front door, a development tool:

    uv run python -m tests.support.attack_door [--source-connections N]

One ``flashsale serve`` (2 workers) on a throwaway embedded PostgreSQL,
deploy/haproxy/haproxy.cfg in front of it (Debian's HAProxy), wrk's hot
coupon from 127.0.0.1 through HAProxy, the attacker (bench/attacker.py) from
127.0.0.2. wrk's 256 connections come from one address, so HAProxy's
per-source connection bound is ``--source-connections`` (default 300: past
wrk's, and the attacker's bound too) and its request-rate bound is off."""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from flashsale.bench import under_attack
from flashsale.bench.database import create_fresh_database
from flashsale.bench.scenarios import HOT
from flashsale.bench.server import RunningServer, free_port, start_server
from flashsale.bench.under_attack import (
    BIG,
    BIG_CLAIMERS,
    SMALL,
    SMALL_AMOUNT,
    WARM_UP,
    AttackRun,
    attack_lines,
    phase,
    render_attack,
)
from flashsale.bench.wrk import Load, run_wrk
from flashsale.storage.admin import seed_coupon
from flashsale.storage.embedded import start_embedded
from tests.support.topology import HAProxy

ATTACKER_SOURCE = "127.0.0.2"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source-connections", default="300")
    parser.add_argument("--duration", type=float, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="flashsale-door-") as tmp:
        work = Path(tmp)
        database = start_embedded(work / "pg", cleanup="delete")
        url = asyncio.run(create_fresh_database(database, (HOT,)))
        asyncio.run(seed_coupon(url, BIG, BIG_CLAIMERS, claims=BIG_CLAIMERS))
        asyncio.run(seed_coupon(url, SMALL, SMALL_AMOUNT))
        server = start_server(url, work / "server.log", workers=2)
        limits = {
            "FLASHSALE_SOURCE_CONNECTIONS": args.source_connections,
            "FLASHSALE_SOURCE_REQUESTS": "100000000",
        }
        backend = server.base_url.removeprefix("http://")
        door = HAProxy(work / "haproxy", free_port(), [backend], limits)
        try:
            door.start()
            door.wait_for_states({"app1": "UP"})
            done = attack(server, door, Load(256, 2, args.duration), print)
        finally:
            door.stop()
            server.stop()
    console = Console(width=200)
    console.print(render_attack(done))
    for line in attack_lines(done):
        console.print(line)


def attack(
    server: RunningServer, door: HAProxy, load: Load, announce: Callable[[str], None]
) -> AttackRun:
    """bench/under_attack.py's three runs, sent to the door."""
    via = RunningServer(server.process, door.base_url, server.log_path)  # the workers' pids
    run_wrk(door.base_url + HOT.path, WARM_UP, HOT.wrk_args("w-"))
    plain = phase(via, load, "plain", announce)
    with under_attack.attacker(via, announce, ATTACKER_SOURCE) as (ready, finish, pid):
        attacked = phase(via, load, "under attack", announce, {"attacker": pid})
        report = finish()
    after = phase(via, load, "after the attack", announce)
    return AttackRun(plain, attacked, after, ready, report, None)


if __name__ == "__main__":
    main()
