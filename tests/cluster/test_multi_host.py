"""A multi-host DATABASE_URL whose first host is a standby: serving, creating
the database and migrating all go to the primary."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from flashsale.storage.database import migrate
from flashsale.storage.migrations import load_migrations
from flashsale.storage.primary import find_primary
from tests.support.replicated import Replicated, start_replicated
from tests.support.servers import served


@pytest.fixture(scope="module")
def replicated() -> Iterator[Replicated]:
    folder = Path(tempfile.mkdtemp(prefix="flashsale-replicated-"))
    cluster = start_replicated(folder)
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("standby_first", [True, False])
async def test_start_up_finds_the_primary_whatever_the_host_order(
    replicated: Replicated, standby_first: bool
) -> None:
    order = (replicated.standby, replicated.primary)
    hosts = order if standby_first else order[::-1]
    database = f"multi_{int(standby_first)}"
    url = replicated.url(database, *hosts)
    assert await find_primary(url) == replicated.url(database, replicated.primary)
    applied = await migrate(url)  # a fresh database: created, then migrated
    assert [m.version for m in applied] == [m.version for m in load_migrations()]
    assert await migrate(url) == []


async def test_serve_with_the_standby_listed_first_creates_migrates_and_claims(
    replicated: Replicated, tmp_path: Path
) -> None:
    url = replicated.url("coupondb", replicated.standby, replicated.primary)
    with served(url, tmp_path / "server.log", workers=1) as server:
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            assert (
                await http.post("/api/coupons", json={"name": "HA", "amount": 3})
            ).status_code == 201
            claim = {"user_id": "u1", "coupon_name": "HA"}
            assert (await http.post("/api/coupons/claim", json=claim)).status_code == 200
            assert (await http.get("/health")).status_code == 200
    primary = await asyncpg.connect(replicated.url("coupondb", replicated.primary))
    try:
        assert await primary.fetchval("SELECT count(*) FROM claims") == 1
    finally:
        await primary.close()
