"""bench/attacker.py, small, against ``flashsale serve``: it opens what it is
told to (half-sent claims, dashboard streams, slow readers of a big coupon),
says so in its ready line, leaves when its stdin closes, and reports what the
server did to its connections. Whether the server cuts them is the bounds'
business (docs/benchmarks.md); this shows the attacker's own bookkeeping."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import msgspec

from flashsale.storage.admin import seed_coupon
from tests.support.servers import serve


def test_the_attacker_opens_its_connections_and_reports_on_leaving(
    database: str, tmp_path: Path
) -> None:
    asyncio.run(seed_coupon(database, "BIG", 2000, claims=2000))
    server = serve(database, tmp_path / "server.log")
    port = server.base_url.rsplit(":", 1)[1]
    counts = ["--half-sent", "20", "--streams", "3", "--slow-readers", "2", "--big", "BIG"]
    command = [sys.executable, "-m", "flashsale.bench.attacker", "--port", port, *counts]
    try:
        with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE) as attacker:
            assert attacker.stdout is not None
            assert attacker.stdin is not None
            ready = msgspec.json.decode(attacker.stdout.readline())["ready"]
            attacker.stdin.close()
            lines = [msgspec.json.decode(line) for line in attacker.stdout]
            assert attacker.wait(timeout=60) == 0
    finally:
        server.stop()
    assert ready["half_sent_open"] == 20
    assert ready["streams"] == {"200": 3}
    assert ready["readers"] == {"200": 2}
    report = next(line["report"] for line in lines if "report" in line)
    assert report["half_sent_open"] == 20
    assert report["half_sent_cut"] <= 20
    assert len(report["reader_bytes"]) == 2
    assert all(read > 0 for read in report["reader_bytes"])
