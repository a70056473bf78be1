"""docker-compose projects for tests/compose: the project's own
docker-compose.yml with CI's override (builds on the host's network), a
project name and host ports of the run's own, driven with the commands a user
types (Debian's docker-compose 1.29), and Docker's API for what ``docker ps``
would show."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from flashsale.bench.server import free_port

REPO = Path(__file__).resolve().parents[2]
OVERRIDE = REPO / "tests" / "compose" / "ci-override.yml"
# The daemon .ci/compose-standins starts; used when DOCKER_HOST is unset.
CI_SOCKET = Path("/run/flashsale-ci-docker/docker.sock")
# Base images the default and cluster profiles build on or run: real ones, or
# the stand-ins .ci/compose-standins builds under these names.
BASE_IMAGES = ("debian:bookworm-slim", "python:3.11-slim", "postgres:16-alpine", "haproxy:2.6")
# Variables docker-compose.yml reads: the test decides them, not the caller's shell.
COMPOSE_VARIABLES = frozenset(
    {"DB_USER", "DB_PASSWORD", "DB_NAME", "DB_SSLMODE", "WEB_WORKERS", "CLAIM_STRATEGY"}
    | {"ADMIN_TOKEN", "REPLICATION_PASSWORD", "COMPOSE_FILE", "COMPOSE_PROJECT_NAME"}
    | {"COMPOSE_PROFILES", "CLAIM_RATE", "CLAIM_BURST"}
    | {"FRONT_DOOR_SOURCE_CONNECTIONS", "FRONT_DOOR_SOURCE_REQUESTS"}
)
PORT_VARIABLES = ("APP_PORT", "CLUSTER_PORT", "HA_PROXY_PORT", "HA_APP_PORT")
# A first build on a loaded two-core machine downloads and installs everything.
START_LIMIT = 900.0
COMMAND_LIMIT = 300.0
# Where a stand-in-less machine's user would be told to look.
HOW_TO = ".ci/compose-standins start (docs/compose.md)"


def docker_environment() -> dict[str, str]:
    """The caller's environment with compose's variables cleared, the CI
    daemon's socket when no DOCKER_HOST is set, and the legacy builder, which
    honours build.network and never fetches a `# syntax=` frontend."""
    env = {k: v for k, v in os.environ.items() if k not in COMPOSE_VARIABLES}
    if "DOCKER_HOST" not in env and CI_SOCKET.exists():
        env["DOCKER_HOST"] = f"unix://{CI_SOCKET}"
    env["DOCKER_BUILDKIT"] = "0"
    env["COMPOSE_DOCKER_CLI_BUILD"] = "0"
    return env


def docker_api(env: dict[str, str]) -> httpx.Client:
    host = env.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if host.startswith("unix://"):
        transport = httpx.HTTPTransport(uds=host.removeprefix("unix://"))
        return httpx.Client(transport=transport, base_url="http://docker", timeout=30)
    if host.startswith("tcp://"):
        return httpx.Client(base_url=f"http://{host.removeprefix('tcp://')}", timeout=30)
    pytest.skip(f"DOCKER_HOST={host}: only unix:// and tcp:// daemons are supported here")


def require_docker() -> dict[str, str]:
    """The environment for docker-compose, or a skip naming what is missing."""
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose not installed: apt-get install docker-compose")
    env = docker_environment()
    host = env.get("DOCKER_HOST", "the default socket")
    if not _socket_listens(env):
        pytest.skip(f"no Docker daemon listens at {host}: start CI's with {HOW_TO}")
    with docker_api(env) as api:
        try:
            api.get("/_ping").raise_for_status()
        except httpx.HTTPError as error:
            pytest.skip(f"no Docker daemon answers at {host} ({error}): start CI's with {HOW_TO}")
        missing = [name for name in BASE_IMAGES if api.get(f"/images/{name}/json").is_error]
    if missing:
        names = ", ".join(missing)
        pytest.skip(f"base images missing: {names}: pull them, or build stand-ins with {HOW_TO}")
    return env


def _socket_listens(env: dict[str, str]) -> bool:
    """Whether a unix socket daemon accepts (httpx would leak the socket of a
    failed unix connect, which -W error turns into a failure)."""
    host = env.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        return True
    with socket.socket(socket.AF_UNIX) as probe:
        probe.settimeout(5)
        try:
            probe.connect(host.removeprefix("unix://"))
        except OSError:
            return False
    return True


@dataclass
class Container:
    service: str
    name: str
    running: bool
    exit_code: int


@dataclass
class ComposeProject:
    """One project of the run's own: a name no other run uses, free host ports."""

    env: dict[str, str]
    profiles: tuple[str, ...]
    log_dir: Path
    name: str = field(default_factory=lambda: f"flashsale-ci-{secrets.token_hex(4)}")
    up_process: subprocess.Popen[bytes] | None = None
    up_runs: int = 0

    def __post_init__(self) -> None:
        self.env = {**self.env, **{variable: str(free_port()) for variable in PORT_VARIABLES}}

    def url(self, port_variable: str) -> str:
        return f"http://127.0.0.1:{self.env[port_variable]}"

    def command(self, *args: str) -> list[str]:
        files = ["-f", str(REPO / "docker-compose.yml"), "-f", str(OVERRIDE)]
        profiles = [part for profile in self.profiles for part in ("--profile", profile)]
        return ["docker-compose", *files, "-p", self.name, *profiles, *args]

    def run(self, *args: str, limit: float = COMMAND_LIMIT) -> str:
        """A docker-compose command to its end; its output, or a failure showing it."""
        done = subprocess.run(
            self.command(*args), env=self.env, cwd=REPO, capture_output=True, timeout=limit
        )
        output = (done.stdout + done.stderr).decode(errors="replace")
        assert done.returncode == 0, f"docker-compose {' '.join(args)}: {output[-3000:]}"
        return done.stdout.decode(errors="replace")

    def up(self, *args: str) -> None:
        """``docker-compose up --build`` attached, as a user runs it (its output
        goes to a log file); returns at once."""
        self.up_runs += 1
        log: IO[bytes] = (self.log_dir / f"{self.name}-up-{self.up_runs}.log").open("wb")
        with log:
            self.up_process = subprocess.Popen(
                self.command("up", "--build", *args),
                env=self.env,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def up_log(self) -> str:
        path = self.log_dir / f"{self.name}-up-{self.up_runs}.log"
        return path.read_text(errors="replace")[-4000:]

    def wait_for_health(self, port_variable: str) -> None:
        """Until ``GET /health`` answers 200 on the published port."""
        deadline = time.monotonic() + START_LIMIT
        while time.monotonic() < deadline:
            assert self.up_process is not None
            if self.up_process.poll() is not None:
                pytest.fail(
                    f"docker-compose up ended ({self.up_process.returncode}): {self.up_log()}"
                )
            try:
                if httpx.get(f"{self.url(port_variable)}/health", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        pytest.fail(f"no healthy answer on {self.url(port_variable)}: {self.up_log()}")

    def wait_for_up_to_end(self) -> int:
        """The attached ``up``'s exit code, once its containers are gone or stopped."""
        assert self.up_process is not None
        return self.up_process.wait(timeout=COMMAND_LIMIT)

    def containers(self) -> list[Container]:
        label = f"com.docker.compose.project={self.name}"
        with docker_api(self.env) as api:
            listed = api.get("/containers/json", params={"all": "1", "filters": _labels(label)})
            return [_container(api, entry) for entry in listed.json()]

    def exec(self, service: str, *args: str, index: int = 1) -> str:
        return self.run("exec", "-T", f"--index={index}", service, *args)

    def remove(self) -> None:
        """Down with the volumes; the images built stay cached under a fixed
        tag (the next run's build reuses their layers), the run's own go."""
        self.run("down", "--volumes", "--remove-orphans")
        if self.up_process is not None:
            self.up_process.wait(timeout=COMMAND_LIMIT)
        with docker_api(self.env) as api:
            for service in ("app", "instance", "pgbouncer"):
                _keep_as_cache(api, f"{self.name}_{service}", service)


def _labels(label: str) -> str:
    return json.dumps({"label": [label]})


def _container(api: httpx.Client, entry: dict[str, Any]) -> Container:
    state = api.get(f"/containers/{entry['Id']}/json").json()["State"]
    return Container(
        service=entry["Labels"]["com.docker.compose.service"],
        name=entry["Names"][0].lstrip("/"),
        running=state["Running"],
        exit_code=state["ExitCode"],
    )


def _keep_as_cache(api: httpx.Client, image: str, service: str) -> None:
    if api.get(f"/images/{image}/json").is_error:
        return
    api.post(f"/images/{image}/tag", params={"repo": "flashsale-ci-cache", "tag": service})
    api.delete(f"/images/{image}")


@contextmanager
def compose_project(env: dict[str, str], log_dir: Path, *profiles: str) -> Iterator[ComposeProject]:
    project = ComposeProject(env, profiles, log_dir)
    try:
        yield project
    finally:
        project.remove()
