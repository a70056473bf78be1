"""A live server's log: JSON lines with request ids, never a secret."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.support.databases import with_password
from tests.support.observability import json_lines
from tests.support.servers import serve

DB_PASSWORD = "Xq9-distinctive-db-password-7Zr"  # trust auth ignores it
ADMIN_TOKEN = "Kp4-distinctive-admin-token-2Wm"


def test_a_live_server_logs_json_with_request_ids_and_no_secret(
    database: str, tmp_path: Path
) -> None:
    env = {"ADMIN_TOKEN": ADMIN_TOKEN, "LOG_ACCESS": "1"}
    server = serve(with_password(database, DB_PASSWORD), tmp_path / "log", env=env)
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
