"""docs/raffle.md's walk-through, replayed against a live server configured
as the page says: each command in order, each answer's status and body as
shown (times, seeds, digests stand for any of their kind). Two things
differ, as they must: the draw is 3 s ahead instead of 30 (the test waits
for it by polling, as the page's `until` loop does), and the seed is new, so
the users the page shows at place k are this run's users at place k (found
through the entries' digests of both). Then the page's ten lines of Python
check the same draw."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from flashsale.bench.server import RunningServer
from tests.support.raffles import IDENTITIES, wait_for_the_draw
from tests.support.servers import serve
from tests.support.walkthroughs import curl_request

PAGE = Path(__file__).resolve().parents[2] / "docs" / "raffle.md"
RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")
ANSWER = re.compile(r"^# (\d{3})(?: (.*))?$")
USERS = ("alice", "bob", "carol", "dave", "erin")


@dataclass
class Step:
    command: str
    status: int | None = None  # an HTTP answer's status
    body: Any = None
    output: str | None = None  # a command's output (verify-draw's "ok")


def walkthrough() -> list[Step]:
    section = PAGE.read_text().split("## A raffle, step by step", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    steps: list[Step] = []
    command = ""
    for line in block.splitlines():
        answer = ANSWER.match(line)
        if answer and steps:
            status, body = answer.groups()
            steps[-1].status, steps[-1].body = int(status), json.loads(body) if body else None
        elif line.startswith("# ") and steps and steps[-1].command.startswith("uv run"):
            steps[-1].output = (steps[-1].output or "") + line[2:] + "\n"
        elif line.strip() and not line.startswith("#"):
            command += line.rstrip("\\") + " "
            if not line.endswith("\\"):
                steps.append(Step(command.strip()))
                command = ""
    return steps


@pytest.fixture
def page_server(database: str, tmp_path: Path) -> Iterator[RunningServer]:
    server = serve(database, tmp_path / "server.log", workers=2, env=IDENTITIES)
    yield server
    server.stop()


def digest(user: str) -> str:
    return hashlib.sha256(user.encode()).hexdigest()


class Replay:
    """Sends the page's commands to ``server``; once drawn, the page's user at
    each place (and their digest) stands for this run's user at that place."""

    def __init__(self, server: RunningServer, client: httpx.Client, steps: list[Step]) -> None:
        self.server = server
        self.client = client
        self.renamed: dict[str, str] = {}
        listed = next(step.body for step in steps if step.command.endswith("/entries"))
        self.page_places = places(listed)

    def substitute(self, text: str) -> str:
        text = text.replace("$ADMIN", IDENTITIES["ADMIN_TOKEN"])
        text = text.replace("$BACKEND", IDENTITIES["BACKEND_TOKEN"])
        text = text.replace("http://localhost:8080", self.server.base_url)
        text = text.replace("localhost:8080", self.server.base_url)
        renamed = {**self.renamed, **{digest(a): digest(b) for a, b in self.renamed.items()}}
        if not renamed:
            return text
        pattern = r"\b(" + "|".join(renamed) + r")\b"
        return re.sub(pattern, lambda m: renamed[m.group(1)], text)

    def send(self, command: str) -> httpx.Response:
        request = curl_request(shlex.split(self.substitute(command))[1:])
        body = request.body
        if body is not None and '"draw_at"' in body:
            soon = (datetime.now(UTC) + timedelta(seconds=5)).isoformat()
            body = re.sub(r'"draw_at":"[^"]+"', f'"draw_at":"{soon}"', body)
        return self.client.request(
            request.method, request.url, headers=request.headers, content=body
        )

    def drawn(self, coupon: str) -> None:
        """Waits for the draw (polling), then learns who is at each place."""
        with httpx.Client(base_url=self.server.base_url, timeout=10) as client:
            wait_for_the_draw(client, coupon)
            ours = places(client.get(f"/api/coupons/{coupon}/entries").json())
        self.renamed = {self.page_places[place]: ours[place] for place in self.page_places}


def places(listed: Any) -> dict[int, str]:
    """Place -> user, from a page of entries of the walk-through's users."""
    users = {digest(user): user for user in USERS}
    return {entry["place"]: users[entry["entrant"]] for entry in listed["entries"]}


def same_answer(shown: Any, answered: Any, rename: Any) -> bool:
    if isinstance(shown, dict) and isinstance(answered, dict):
        return shown.keys() == answered.keys() and all(
            same_answer(value, answered[key], rename) for key, value in shown.items()
        )
    if isinstance(shown, list) and isinstance(answered, list):
        return len(shown) == len(answered) and all(
            same_answer(a, b, rename) for a, b in zip(shown, answered, strict=True)
        )
    if isinstance(shown, str) and RFC3339_UTC.match(shown):
        return isinstance(answered, str) and bool(RFC3339_UTC.match(answered))
    if isinstance(shown, str) and HEX64.match(shown):
        return isinstance(answered, str) and bool(HEX64.match(answered))
    if isinstance(shown, str):
        return bool(rename(shown) == answered)
    return bool(shown == answered)


def test_the_raffle_walkthrough_gets_the_answers_it_shows(page_server: RunningServer) -> None:
    steps = walkthrough()
    assert any("CLAIM_AUTH=backend" in step.command for step in steps)
    with httpx.Client(timeout=10) as client:
        replay = Replay(page_server, client, steps)
        for step in steps:
            run_step(replay, step)
    assert replay.renamed, "the walk-through never waited for the draw"


def run_step(replay: Replay, step: Step) -> None:
    words = step.command.split()
    if words[0] == "curl":
        answer = replay.send(step.command)
        assert answer.status_code == step.status, (step.command, answer.text)
        if step.body is not None:
            assert same_answer(step.body, answer.json(), replay.substitute), (
                step.command,
                answer.json(),
            )
    elif words[0] == "until":  # the page's wait for the draw: polled here too
        coupon = re.search(r"/api/coupons/(\w+)", step.command)
        assert coupon is not None
        replay.drawn(coupon.group(1))
    elif words[:4] == ["uv", "run", "flashsale", "verify-draw"]:
        arguments = shlex.split(replay.substitute(step.command))[4:]
        command = [sys.executable, "-m", "flashsale", "verify-draw", *arguments]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        assert (done.returncode, done.stdout) == (0, replay.substitute(step.output or "")), done


def test_the_pages_ten_lines_of_python_check_a_live_draw(page_server: RunningServer) -> None:
    steps = walkthrough()
    with httpx.Client(timeout=10) as client:
        replay = Replay(page_server, client, steps)
        for step in steps:
            if step.command.startswith("until"):
                break
            if step.command.startswith("curl"):
                assert replay.send(step.command).is_success, step.command
    with httpx.Client(base_url=page_server.base_url, timeout=10) as client:
        wait_for_the_draw(client, "LAUNCH")
    section = PAGE.read_text().split("```python\n", 1)[1].split("```", 1)[0]
    source = section.replace("http://localhost:8080", page_server.base_url)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(source, "docs/raffle.md", "exec"), {})
    assert re.fullmatch(r"ok; alice: \[[1-5]\]\n", printed.getvalue())
