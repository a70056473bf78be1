"""An operator's backup: pg_dump of a database holding claims, restored into
a fresh database, which the service then serves and ``flashsale verify``
accepts. Dumped and restored with the PostgreSQL tools of the server's own
release (the wheel's for the embedded server, Debian's for a PostgreSQL 15
named by TEST_DATABASE_URL), as an operator would."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import asyncpg

from flashsale.storage import admin
from tests.faults.test_verify_command import verify
from tests.support.databases import DatabaseServer
from tests.support.load import claim_all, create_coupon, outcomes
from tests.support.postgres_tools import postgres_tool
from tests.support.servers import serve


def dump(database: str, path: Path, major: int) -> None:
    subprocess.run(
        [
            postgres_tool("pg_dump", major),
            "--format=custom",
            f"--file={path}",
            f"--dbname={database}",
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )


def restore(path: Path, database: str, major: int) -> None:
    subprocess.run(
        [postgres_tool("pg_restore", major), "--exit-on-error", f"--dbname={database}", str(path)],
        check=True,
        capture_output=True,
        timeout=300,
    )


async def test_a_restored_dump_is_served_and_verified(
    database_server: DatabaseServer,
    database: str,
    db: asyncpg.Connection[asyncpg.Record],
    tmp_path: Path,
) -> None:
    major = int(await db.fetchval("SHOW server_version_num")) // 10_000
    server = serve(database, tmp_path / "before.log")
    try:
        await create_coupon(server.base_url, "SALE", 3)
        sold = await claim_all([server.base_url], "SALE", ["u1", "u2"])
        assert outcomes(sold) == {"ok": 2}
    finally:
        server.stop()
    dump(database, tmp_path / "flashsale.dump", major)
    copy = await admin.create_database(database_server.url, f"flashsale_r_{uuid.uuid4().hex[:12]}")
    try:
        restore(tmp_path / "flashsale.dump", copy, major)
        server = serve(copy, tmp_path / "after.log")
        try:
            replies = await claim_all([server.base_url], "SALE", ["u1", "u3"])
            replies += await claim_all([server.base_url], "SALE", ["u4"])
        finally:
            server.stop()
        assert [reply.outcome for reply in replies] == [
            "409 already_claimed",
            "ok",
            "409 sold_out",
        ]
        result = verify("--database-url", copy)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "1 coupons, 3 claims" in result.stdout
    finally:
        await admin.drop_database(database_server.url, copy)
