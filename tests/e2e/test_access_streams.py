"""The two never-ending streams' cells of docs/access.md's table, over a
real server (the in-process client waits for a body's end): the events
stream for the operator and the backend, the dashboard's for the operator;
everyone else 401 or 403 with the usual body."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.support.servers import served

OPERATOR = {"authorization": "Bearer ops-stream-token-0123"}
BACKEND = {"authorization": "Bearer shop-stream-token-0123"}
ALLOWED = {"/api/events/stream": ("operator", "backend"), "/dashboard/events": ("operator",)}


def first_status(url: str, headers: dict[str, str]) -> tuple[int, dict[str, object] | None]:
    """The status, and the JSON body unless the stream began (200)."""
    with httpx.stream("GET", url, headers=headers, timeout=30) as response:
        if response.status_code == 200:
            return 200, None
        response.read()
        return response.status_code, response.json()


@pytest.mark.parametrize("path", sorted(ALLOWED))
def test_each_stream_admits_its_callers_only(database: str, tmp_path: Path, path: str) -> None:
    env = {"ADMIN_TOKEN": "ops-stream-token-0123", "BACKEND_TOKEN": "shop-stream-token-0123"}
    with served(database, tmp_path / "server.log", env=env) as server:
        seen = {
            caller: first_status(server.base_url + path, headers)
            for caller, headers in (("operator", OPERATOR), ("backend", BACKEND), ("anonymous", {}))
        }
    for caller, (status, body) in seen.items():
        if caller in ALLOWED[path]:
            assert status == 200, (caller, body)
        else:
            expected = (401, "unauthorized") if caller == "anonymous" else (403, "forbidden")
            assert body is not None
            assert (status, body["error"]) == expected
