"""``flashsale bench`` end to end, briefly: servers, wrk, and the checks."""

from __future__ import annotations

import os
import re
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
    done = bench(database_server, "--duration", "4")
    assert done.returncode == 0, done.stdout + done.stderr
    for strategy in ("batched", "transaction"):
        for scenario in ("no-db ceiling", "hot coupon", "rush (stock 1,000)"):
            assert any(
                strategy in line and scenario in line for line in done.stdout.splitlines()
            ), done.stdout
    assert done.stdout.count("ok (1000 claims)") == 2, done.stdout
    assert "FAILED" not in done.stdout


def test_the_claimers_bench_prints_each_row_and_finds_the_database_sound(
    database_server: DatabaseServer,
) -> None:
    # Every row once (1 s each): the table's shape and the checks, never a speed.
    done = bench(
        database_server, "--claimers", "plain,hs256,rs256", "--rounds", "1", "--duration", "1"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {
        title: next((line for line in done.stdout.splitlines() if f"│ {title} " in line), "")
        for title in ("hot coupon", "hot coupon, HS256 claim tokens", "hot coupon, RS256 claimers")
    }
    for title, line in rows.items():
        assert re.search(r"ok \(\d+ claims\)", line), (title, done.stdout)
    # The token rows: a ratio to plain, a verification cost, no 401 (every token valid).
    for title in ("hot coupon, HS256 claim tokens", "hot coupon, RS256 claimers"):
        cells = [cell.strip() for cell in rows[title].split("│")]
        assert cells[5].endswith("%"), done.stdout
        assert " / " in cells[7], done.stdout
        assert "401" not in cells[9], done.stdout
    assert "0 run(s) failed" in done.stdout
    assert "FAILED" not in done.stdout


def bench(database_server: DatabaseServer, *options: str) -> subprocess.CompletedProcess[str]:
    """``flashsale bench`` with ``options``, 16 connections, one wrk thread."""
    command = [sys.executable, "-m", "flashsale", "bench", *options]
    command += ["--connections", "16", "--threads", "1", "--database-url", database_server.url]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "220"},
        check=False,
    )
