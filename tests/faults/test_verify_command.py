"""``flashsale verify`` on a live database: exit 0 when every invariant holds,
non-zero naming each coupon that breaks one."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import asyncpg

from flashsale.bench.server import RunningServer
from tests.support.load import claim_all, create_coupon


def verify(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flashsale", "verify", *args],
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_verify_passes_after_a_real_sale(live_server: RunningServer, database: str) -> None:
    await create_coupon(live_server.base_url, "FINE", 10)
    await create_coupon(live_server.base_url, "UNTOUCHED", 5)
    await claim_all([live_server.base_url], "FINE", [f"u{n}" for n in range(30)])
    result = verify("--database-url", database)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 coupons, 10 claims" in result.stdout


def test_verify_uses_the_configured_database_without_an_option(database: str) -> None:
    result = verify(env={"DATABASE_URL": database})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 coupons, 0 claims" in result.stdout


async def break_invariants(db: asyncpg.Connection[Any]) -> None:
    """What no code path of the service can do: an operator's bad hand edits."""
    await db.execute("INSERT INTO coupons (name, amount, remaining_amount) VALUES ('OK', 5, 5)")
    await db.execute("INSERT INTO coupons (name, amount, remaining_amount) VALUES ('DRIFT', 5, 5)")
    await db.execute("INSERT INTO coupons (name, amount, remaining_amount) VALUES ('DOUBLE', 5, 5)")
    await db.execute("ALTER TABLE claims DISABLE TRIGGER USER")
    await db.execute("ALTER TABLE claims DROP CONSTRAINT claims_pkey")
    await db.execute(
        "INSERT INTO claims (coupon_id, coupon_name, user_id) "
        "SELECT id, name, 'someone' FROM coupons WHERE name IN ('DRIFT', 'DOUBLE')"
    )
    await db.execute(
        "INSERT INTO claims (coupon_id, coupon_name, user_id) "
        "SELECT id, name, 'someone' FROM coupons WHERE name = 'DOUBLE'"
    )
    await db.execute("UPDATE coupons SET remaining_amount = 3 WHERE name = 'DOUBLE'")


async def test_verify_fails_naming_each_coupon_that_breaks_an_invariant(
    database: str, db: asyncpg.Connection[Any]
) -> None:
    await break_invariants(db)
    result = verify("--database-url", database)
    assert result.returncode == 1
    out = result.stdout
    assert "coupon 'DRIFT': amount 5, remaining 5, 1 claims" in out
    assert "coupon 'DOUBLE': amount 5, remaining 3, 2 claims (1 duplicated)" in out
    assert "'OK'" not in out
    assert "2 of 3 coupons break an invariant" in out


def test_verify_against_an_unreachable_database_fails_in_one_line() -> None:
    result = verify("--database-url", "postgresql://u:pw-hidden@127.0.0.1:1/none")
    assert result.returncode != 0
    assert "cannot check" in result.stderr
    assert "pw-hidden" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
