"""DB_PASSWORD and webhook secrets never reach a log line, an error message
or a response."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
from pathlib import Path

import httpx

from flashsale.bench.server import free_port
from tests.support.load import create_coupon, post_all
from tests.support.receiver import Receiver
from tests.support.servers import serve

PASSWORD = "Pw-7f3a9c-never-print-me"


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flashsale", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        check=False,
    )


def test_serve_against_an_unreachable_database_fails_in_one_line_without_the_password(
    tmp_path: Path,
) -> None:
    result = run(
        ["serve"],
        {"DB_HOST": "127.0.0.1", "DB_PORT": str(free_port()), "DB_PASSWORD": PASSWORD,
         "APP_HOST": "127.0.0.1", "APP_PORT": str(free_port())},
        tmp_path,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert PASSWORD not in output
    assert "Traceback" not in output
    assert "cannot prepare the database" in output


def test_a_database_url_with_a_password_is_never_printed(tmp_path: Path) -> None:
    url = f"postgresql://someone:{PASSWORD}@127.0.0.1:{free_port()}/coupondb"
    for args in (["serve"], ["migrate"], ["verify", "--database-url", url]):
        env = {"DATABASE_URL": url, "APP_HOST": "127.0.0.1", "APP_PORT": str(free_port())}
        result = run(args, env, tmp_path)
        assert result.returncode != 0, args
        assert PASSWORD not in result.stdout + result.stderr, args
        assert "Traceback" not in result.stdout + result.stderr, args


WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"Zq81-never-print-this-secret!!!").decode()


async def test_a_webhook_secret_is_never_logged_or_answered(database: str, tmp_path: Path) -> None:
    receiver = Receiver(WEBHOOK_SECRET, fail_first=2)
    await receiver.start()
    env = {"LOG_LEVEL": "debug", "LOG_ACCESS": "1", "WEBHOOK_TIMEOUT": "1",
           "WEBHOOK_BACKOFF_BASE": "0.1", "WEBHOOK_BACKOFF_MAX": "0.2",
           "WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8"}  # fmt: skip
    server = await asyncio.to_thread(serve, database, tmp_path / "server.log", env=env)
    try:
        base = server.base_url
        answers = await post_all([
            (f"{base}/api/webhooks", {"url": receiver.url, "secret": WEBHOOK_SECRET}),
            (f"{base}/api/webhooks", {"url": "gopher://x", "secret": WEBHOOK_SECRET}),
            (f"{base}/api/webhooks", {"url": receiver.url, "secret": WEBHOOK_SECRET + "\n"}),
            (f"{base}/api/webhooks", {"url": receiver.url}),  # a secret made by the service
        ])  # fmt: skip
        assert [answer.status for answer in answers] == [201, 400, 400, 201]
        made = answers[3].body["secret"]
        assert answers[0].body["secret"] == WEBHOOK_SECRET  # shown once, in the 201
        async with httpx.AsyncClient(base_url=base) as client:  # the receiver knows one secret
            gone = await client.delete(f"/api/webhooks/{answers[3].body['id']}")
            assert gone.status_code == 204
        await create_coupon(base, "SECRET_HOOK", 5)
        await receiver.wait_for(1)
        async with httpx.AsyncClient(base_url=base) as client:
            texts = [answer.body.__repr__() for answer in answers[1:3]]
            texts += [(await client.get(path)).text for path in ("/api/webhooks", "/openapi.json")]
    finally:
        assert await asyncio.to_thread(server.stop) == 0
        await receiver.stop()
    assert all(arrival.verified for arrival in receiver.arrivals)
    assert all(WEBHOOK_SECRET not in text and made not in text for text in texts)
    assert "/api/webhooks" in server.log()  # the access log did see the requests
    assert WEBHOOK_SECRET not in server.log()
    assert made not in server.log()
