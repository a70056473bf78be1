"""The server under test, started as a user starts it: ``python -m
flashsale serve`` in a child process, configured through the environment."""

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
from dataclasses import dataclass, field
from pathlib import Path


class ServerError(RuntimeError):
    """The server exited early or never became healthy."""


@dataclass(frozen=True, slots=True)
class ServerConfig:
    database_url: str
    workers: int
    strategy: str
    log_path: Path
    env: Mapping[str, str] = field(default_factory=dict)  # e.g. DB_STATEMENT_CACHE_SIZE


@dataclass
class RunningServer:
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def worker_pids(self) -> list[int]:
        """Granian's worker processes (children of the serve process)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return [int(pid) for pid in children.read_text().split()]
        except OSError:
            return []

    def stop(self, timeout: float = 20) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_environment(config: ServerConfig, port: int) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": config.database_url,
        "APP_HOST": "127.0.0.1",
        "APP_PORT": str(port),
        "WEB_WORKERS": str(config.workers),
        "CLAIM_STRATEGY": config.strategy,
        "FLASHSALE_BENCH_ROUTES": "true",
        "LOG_LEVEL": "warning",
        **config.env,
    }


def start_server(config: ServerConfig) -> RunningServer:
    port = free_port()
    with config.log_path.open("wb") as log_file:  # the child keeps its own descriptor
        process = subprocess.Popen(
            [sys.executable, "-m", "flashsale", "serve"],
            env=server_environment(config, port),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    server = RunningServer(process, f"http://127.0.0.1:{port}", config.log_path)
    try:
        wait_until_healthy(server)
    except BaseException:
        server.stop()
        raise
    return server


def wait_until_healthy(server: RunningServer, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise ServerError(f"the server exited early:\n{server.log_tail()}")
        if _healthy(f"{server.base_url}/health"):
            return
        time.sleep(0.1)
    raise ServerError(f"the server did not become healthy:\n{server.log_tail()}")


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - http://127.0.0.1
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False
