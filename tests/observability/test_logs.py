"""Logs are JSON lines with request ids, and never carry a secret."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from litestar.testing import AsyncTestClient

from tests.support import start_server

DB_PASSWORD = "Xq9-distinctive-db-password-7Zr"  # trust auth ignores it
ADMIN_TOKEN = "Kp4-distinctive-admin-token-2Wm"


def with_password(url: str, password: str) -> str:
    """The URL with a password (the test servers trust local users, so it is
    carried everywhere and checked nowhere: only its absence from logs counts)."""
    parts = urlsplit(url)
    user, _, host = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{user or 'postgres'}:{password}@{host}"))


def json_lines(text: str) -> list[dict[str, Any]]:
    lines = [line for line in text.splitlines() if line.strip()]
    return [json.loads(line) for line in lines]  # fails on any line that is not JSON


def test_a_live_server_logs_json_with_request_ids_and_no_secret(
    database: str, tmp_path: Path
) -> None:
    env = {"ADMIN_TOKEN": ADMIN_TOKEN, "LOG_ACCESS": "1"}
    server = start_server(with_password(database, DB_PASSWORD), tmp_path / "log", env=env)
    try:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "X-Request-ID": "trace-abc-123"}
        created = httpx.post(
            f"{server.base_url}/api/coupons", json={"name": "LOGGED", "amount": 1}, headers=headers
        )
        assert created.status_code == 201
        httpx.get(f"{server.base_url}/api/coupons/NOPE", headers={"X-Request-ID": "trace-404"})
    finally:
        server.stop()
    text = server.log()
    assert DB_PASSWORD not in text
    assert ADMIN_TOKEN not in text
    lines = json_lines(text)
    configuration = next(line for line in lines if line["event"] == "configuration")
    assert configuration["admin_token_set"] is True
    assert "***" in configuration["database_url"]
    access = {line["request_id"]: line for line in lines if line["event"] == "request"}
    assert access["trace-abc-123"]["route"] == "/api/coupons"
    assert access["trace-abc-123"]["status"] == 201
    assert access["trace-404"]["status"] == 404
    assert any(line["logger"] == "_granian" for line in lines)  # Granian's own lines too


async def test_requests_are_not_logged_unless_asked(
    client: AsyncTestClient[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    await client.get("/health")
    await client.get("/api/coupons/NOPE")
    events = [line.get("event") for line in json_lines(capsys.readouterr().out)]
    assert "request" not in events
