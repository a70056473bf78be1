"""The README's walk-through, replayed: each curl command in it, sent to the
service in order, gets the status and the body the README shows (times are
the database's, so a time in the README stands for any RFC 3339 UTC time)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.support.api import Client
from tests.support.walkthroughs import curl_request

README = Path(__file__).resolve().parents[2] / "README.md"
RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def walkthrough() -> list[tuple[list[str], int, Any]]:
    """(curl arguments, status, body or None) for each command of the block
    under '## Walk-through'."""
    section = README.read_text().split("## Walk-through", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    steps = []
    command = ""
    for line in block.splitlines():
        if line.startswith("# "):
            status, _, body = line[2:].partition(" ")
            steps.append(
                (shlex.split(command)[1:], int(status), json.loads(body) if body else None)
            )
            command = ""
        elif line.strip():
            command += line.rstrip("\\") + " "
    return steps


async def send(client: Client, arguments: list[str]) -> Any:
    request = curl_request(arguments)
    path = urlsplit(request.url).path
    return await client.request(request.method, path, headers=request.headers, content=request.body)


def same_answer(shown: Any, answered: Any) -> bool:
    if isinstance(shown, dict) and isinstance(answered, dict):
        return shown.keys() == answered.keys() and all(
            same_answer(value, answered[key]) for key, value in shown.items()
        )
    if isinstance(shown, str) and RFC3339_UTC.match(shown):
        return isinstance(answered, str) and bool(RFC3339_UTC.match(answered))
    return bool(shown == answered)


async def test_the_readme_walkthrough_gets_the_answers_it_shows(client: Client) -> None:
    steps = walkthrough()
    assert len(steps) >= 4
    for arguments, status, body in steps:
        response = await send(client, arguments)
        assert response.status_code == status, arguments
        if body is not None:
            assert same_answer(body, response.json()), (arguments, response.json())
