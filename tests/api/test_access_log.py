"""No access log unless LOG_ACCESS asks for one (it costs throughput)."""

from __future__ import annotations

import pytest

from tests.support.api import Client
from tests.support.observability import json_lines


async def test_requests_are_not_logged_unless_asked(
    client: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    await client.get("/health")
    await client.get("/api/coupons/NOPE")
    events = [line.get("event") for line in json_lines(capsys.readouterr().out)]
    assert "request" not in events
