"""``flashsale bench`` end to end, briefly: servers, wrk, and the checks."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.support.databases import DatabaseServer

pytestmark = pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")


def test_a_short_bench_prints_the_table_and_finds_the_database_sound(
    database_server: DatabaseServer,
) -> None:
    # 4 s: long enough for the transaction strategy to sell the rush out on a
    # loaded 2-core machine (about 450 claims/s at worst, seen here).
    command = [sys.executable, "-m", "flashsale", "bench", "--duration", "4"]
    command += ["--connections", "16", "--threads", "1", "--database-url", database_server.url]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "COLUMNS": "220"},
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for strategy in ("batched", "transaction"):
        for scenario in ("no-db ceiling", "hot coupon", "rush (stock 1,000)"):
            assert any(
                strategy in line and scenario in line for line in done.stdout.splitlines()
            ), done.stdout
    assert done.stdout.count("ok (1000 claims)") == 2, done.stdout
    assert "FAILED" not in done.stdout
