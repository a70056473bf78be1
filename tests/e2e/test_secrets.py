"""DB_PASSWORD never reaches a log line, an error message or a response."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from flashsale.bench.server import free_port

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
