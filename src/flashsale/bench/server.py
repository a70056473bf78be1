"""The server under test, started as a user starts it: ``python -m
flashsale serve`` in a child process, configured through the environment.
The bench and the test suite both start their servers here."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

READY_LINE = '"worker ready"'  # what each worker logs once its pool and engine exist


class ServerError(RuntimeError):
    """The server exited early or never became ready."""


@dataclass
class RunningServer:
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self, chars: int = 3000) -> str:
        return self.log()[-chars:]

    def worker_pids(self) -> list[int]:
        """Granian's worker processes (children of the serve process)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return [int(pid) for pid in children.read_text().split()]
        except OSError:
            return []

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        """Signal the server and wait for its exit code; subprocess.TimeoutExpired
        if it is still running after ``timeout`` seconds."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(
    database_url: str | None,
    log_path: Path,
    *,
    workers: int = 1,
    host: str = "127.0.0.1",
    env: Mapping[str, str] | None = None,
    new_session: bool = False,
    timeout: float = 60,
    module: str = "flashsale",
) -> RunningServer:
    """``flashsale serve`` on a free port of ``host`` (a loopback address),
    returned once healthy with every worker ready. ``database_url`` None names
    no database at all (DATABASE_URL and DB_HOST are not passed on), so the
    server brings its embedded PostgreSQL. ``new_session``: its own process
    group (and session), so a signal to the group reaches Granian's main
    process and every worker; mind that the kernel's autogroup then gives it
    its own share of the CPU."""
    port = free_port()
    environment = {
        # The bench and the tests rush from one address (127.0.0.1): the
        # per-client claim limit stays off, and the keys quota of an
        # anonymous client (counted per address) out of reach, unless the
        # caller's environment or ``env`` sets them (docs/operations.md).
        "CLAIM_RATE": "0",
        "IDEMPOTENCY_KEYS_PER_IDENTITY": "1000000000",
        **_without_database(os.environ),
        **({} if database_url is None else {"DATABASE_URL": database_url}),
        "APP_HOST": host,
        "APP_PORT": str(port),
        "WEB_WORKERS": str(workers),
        "LOG_LEVEL": "info",  # the ready lines are info; requests log nothing by default
        **(env or {}),
    }
    # ``module``: the bench's raw ceiling is served the same way.
    command = [sys.executable, "-m", module, *(["serve"] if module == "flashsale" else [])]
    with log_path.open("wb") as log_file:  # the child keeps its own descriptor
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            command,
            env=environment,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=log_path.parent,
            start_new_session=new_session,
        )
    server = RunningServer(process, f"http://{host}:{port}", log_path)
    try:
        wait_until_ready(server, workers, timeout)
    except BaseException:
        server.kill()
        raise
    return server


def _without_database(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment minus the variables that name a database server
    (config.Settings.uses_embedded_database); start_server sets its own."""
    return {k: v for k, v in environ.items() if k not in ("DATABASE_URL", "DB_HOST")}


def wait_until_ready(server: RunningServer, workers: int, timeout: float = 60) -> None:
    """Healthy, and every worker ready: one worker answers /health while
    another may still be opening its pool."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise ServerError(f"the server exited early:\n{server.log_tail()}")
        if healthy(server.base_url) and server.log().count(READY_LINE) >= workers:
            return
        time.sleep(0.1)
    raise ServerError(f"the server did not become ready:\n{server.log_tail()}")


def healthy(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/health", timeout=1) as response:  # noqa: S310 - http://127.0.0.1
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False
