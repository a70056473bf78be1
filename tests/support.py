"""Helpers shared by the test levels: throwaway databases and live servers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx

from flashsale.bench.server import free_port as free_port
from flashsale.storage.database import migrate

ROOT = Path(__file__).resolve().parent.parent


def database_url(server_url: str, database: str) -> str:
    """The server's URL pointing at another database."""
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path=f"/{database}"))


@dataclass
class DatabaseServer:
    """A PostgreSQL server the suite may create databases on."""

    url: str  # any database on the server, used for CREATE/DROP DATABASE
    template: str = field(default_factory=lambda: f"flashsale_tpl_{uuid.uuid4().hex[:8]}")

    @property
    def template_url(self) -> str:
        return database_url(self.url, self.template)

    async def prepare_template(self) -> None:
        await migrate(self.template_url)

    async def create_database(self) -> str:
        """A fresh, migrated database (a copy of the template); returns its URL."""
        name = f"flashsale_t_{uuid.uuid4().hex[:12]}"
        admin = await asyncpg.connect(self.url)
        try:
            await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        finally:
            await admin.close()
        return database_url(self.url, name)

    async def drop_database(self, url: str) -> None:
        name = urlsplit(url).path.lstrip("/")
        admin = await asyncpg.connect(self.url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@dataclass
class LiveServer:
    """``flashsale serve`` in a child process, as a user would run it."""

    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)


def start_server(
    database: str,
    log_path: Path,
    *,
    workers: int = 1,
    env: Mapping[str, str] | None = None,
    new_session: bool = False,
) -> LiveServer:
    """``new_session``: own process group, so a signal to the group reaches
    Granian's main process and every worker (crash tests kill -9 them all)."""
    port = free_port()
    environment = {
        **os.environ,
        "DATABASE_URL": database,
        "APP_HOST": "127.0.0.1",
        "APP_PORT": str(port),
        "WEB_WORKERS": str(workers),
        "DB_POOL_MIN": "1",
        "DB_POOL_MAX": "8",
        "LOG_LEVEL": "info",  # start_server waits for each worker's "worker ready" line
        **(env or {}),
    }
    with log_path.open("wb") as log_file:  # the child keeps its own descriptor
        process = subprocess.Popen(
            [sys.executable, "-m", "flashsale", "serve"],
            env=environment,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=log_path.parent,
            start_new_session=new_session,
        )
    server = LiveServer(process, f"http://127.0.0.1:{port}", log_path)
    _wait_until_ready(server, workers)
    return server


def _wait_until_ready(server: LiveServer, workers: int, timeout: float = 30) -> None:
    """Healthy, and every worker ready: one worker answers /health while
    another may still be opening its pool."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{server.log()}")
        try:
            healthy = httpx.get(f"{server.base_url}/health", timeout=1).status_code == 200
            if healthy and server.log().count('"worker ready"') >= workers:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.stop(signal.SIGKILL)
    raise RuntimeError(f"server did not become healthy:\n{server.log()}")
