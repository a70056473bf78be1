"""The many-instance topology on this machine, from Debian's packages and the
configuration files in deploy/ (the ones docker-compose.yml uses): PgBouncer
in transaction mode, instances of ``flashsale serve`` behind it, HAProxy in
front. Used by tests/cluster and the development bench
(``python -m tests.support.bench --topology``)."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from urllib.parse import parse_qs, urlsplit, urlunsplit

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
MAX_INSTANCES = 8
# Debian's PgBouncer 1.18 tracks no prepared statements in transaction mode.
BEHIND_PGBOUNCER = {"DB_STATEMENT_CACHE_SIZE": "0"}
_AGGREGATES = ("BACKEND", "FRONTEND")  # FLASHSALE_APP1..8 in deploy/haproxy/haproxy.cfg
# The front door's per-source bounds, off: tests/cluster and the bench rush
# thousands of claims from 127.0.0.1, one source. tests/cluster/test_front_door.py
# sets them on purpose.
NO_SOURCE_LIMITS = {
    "FLASHSALE_SOURCE_CONNECTIONS": "100000",
    "FLASHSALE_SOURCE_REQUESTS": "100000000",
}


class TopologyError(RuntimeError):
    """A party is missing or did not come up."""


def require_binary(name: str, package: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is None:
        raise TopologyError(f"{name} not found: install Debian's {package} package")
    return path


def server_address(database_url: str) -> tuple[str, int]:
    """Host (or socket folder) and port PgBouncer reaches PostgreSQL at."""
    parts = urlsplit(database_url)
    query = parse_qs(parts.query)
    host = query.get("host", [parts.hostname or "127.0.0.1"])[0]
    port = int(query.get("port", [parts.port or 5432])[0])
    return host, port


def through(database_url: str, host: str, port: int) -> str:
    """The same user and database, reached at ``host:port`` over TCP."""
    parts = urlsplit(database_url)
    userinfo = parts.netloc.rpartition("@")[0] or "postgres"
    query = "&".join(
        f"{k}={v[0]}" for k, v in parse_qs(parts.query).items() if k not in ("host", "port")
    )
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{host}:{port}", query=query))


def wait_for_port(port: int, timeout: float = 10, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    raise TopologyError(f"nothing listens on {host}:{port} after {timeout:g} s")


def wait_for_unix_socket(path: Path, timeout: float = 30) -> None:
    """Until something accepts on the Unix socket ``path`` (HAProxy's worker
    opens its runtime API after the listening port is bound: a loaded
    machine shows the gap)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_UNIX) as sock:
            if sock.connect_ex(str(path)) == 0:
                return
        time.sleep(0.05)
    raise TopologyError(f"nothing accepts on {path} after {timeout:g} s")


def stop_process(process: subprocess.Popen[bytes] | None, sig: int) -> None:
    """``sig``, then kill if it is still running 10 s later."""
    if process is not None and process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _run_as(server_host: str) -> str | None:
    """PgBouncer refuses to run as root: then it runs as the owner of the
    server's socket folder (the embedded server's is private to its account),
    or as postgres."""
    if os.geteuid() != 0:
        return None
    if server_host.startswith("/"):
        return pwd.getpwuid(Path(server_host).stat().st_uid).pw_name
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    return None


@dataclass
class PgBouncer:
    """deploy/pgbouncer/pgbouncer.ini rendered into ``folder``, on ``port``."""

    folder: Path
    server: tuple[str, int]
    port: int
    user: str = "postgres"
    process: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.folder / "pgbouncer.log"

    def render(self) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o755)  # read by the account PgBouncer switches to
        auth = self.folder / "userlist.txt"
        auth.write_text(f'"{self.user}" ""\n')
        template = Template((DEPLOY / "pgbouncer" / "pgbouncer.ini").read_text())
        config = self.folder / "pgbouncer.ini"
        config.write_text(
            template.substitute(
                PGBOUNCER_SERVER_HOST=self.server[0],
                PGBOUNCER_SERVER_PORT=self.server[1],
                PGBOUNCER_LISTEN_ADDR="127.0.0.1",
                PGBOUNCER_LISTEN_PORT=self.port,
                PGBOUNCER_AUTH_TYPE="trust",  # the suite's servers trust loopback
                PGBOUNCER_AUTH_FILE=auth,
                PGBOUNCER_ADMIN_USER=self.user,
            )
        )
        for path in (auth, config):
            path.chmod(0o644)
        return config

    def start(self) -> None:
        binary = require_binary("pgbouncer", "pgbouncer")
        config = self.render()
        account = _run_as(self.server[0])
        command = [binary, *(["-u", account] if account else []), str(config)]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_port(self.port)
        except TopologyError:
            self.stop()
            raise TopologyError(f"pgbouncer did not start:\n{self.log()}") from None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """SIGTERM: PgBouncer 1.18 closes every connection at once."""
        stop_process(self.process, sig)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def url_for(self, database_url: str) -> str:
        return through(database_url, "127.0.0.1", self.port)


@dataclass
class HAProxy:
    """deploy/haproxy/haproxy.cfg on ``port``, balancing ``backends``."""

    folder: Path
    port: int
    backends: list[str]  # host:port of each instance
    # FLASHSALE_* front-door variables of haproxy.cfg (the file's defaults
    # for any not named, except the per-source bounds: NO_SOURCE_LIMITS)
    settings: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> Path:
        return self.folder / "haproxy.sock"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def environment(self) -> dict[str, str]:
        if not 1 <= len(self.backends) <= MAX_INSTANCES:
            raise TopologyError(f"HAProxy's config lists 1 to {MAX_INSTANCES} instances")
        env = {
            **os.environ,
            "FLASHSALE_BIND": f"127.0.0.1:{self.port}",
            "FLASHSALE_HAPROXY_DIR": str(DEPLOY / "haproxy"),
            "FLASHSALE_HAPROXY_SOCKET": str(self.socket_path),
            **NO_SOURCE_LIMITS,
            **self.settings,
        }
        env.pop("FLASHSALE_APP_DNS", None)
        for number, backend in enumerate(self.backends, start=1):
            env[f"FLASHSALE_APP{number}"] = backend
        return env

    def start(self) -> None:
        binary = require_binary("haproxy", "haproxy")
        self.folder.mkdir(parents=True, exist_ok=True)
        command = [binary, "-W", "-db", "-f", str(DEPLOY / "haproxy" / "haproxy.cfg")]
        with (self.folder / "haproxy.log").open("ab") as log:
            self.process = subprocess.Popen(
                command, env=self.environment(), stdout=log, stderr=subprocess.STDOUT
            )
        try:
            wait_for_port(self.port, timeout=30)
            wait_for_unix_socket(self.socket_path)
        except TopologyError:
            self.stop()
            raise TopologyError(f"haproxy did not start:\n{self.log()}") from None

    def stop(self) -> None:
        stop_process(self.process, signal.SIGUSR1)  # soft stop: finish what is in flight

    def log(self) -> str:
        return (self.folder / "haproxy.log").read_text(errors="replace")[-3000:]

    def command(self, line: str) -> str:
        """The runtime API's answer to one command (``show stat``, ...)."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(2)
            sock.connect(str(self.socket_path))
            sock.sendall(line.encode() + b"\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        return data.decode()

    def _stats(self) -> list[dict[str, str]]:
        """The instances' rows of the runtime API's ``show stat`` (CSV)."""
        lines = self.command("show stat").splitlines()
        header = lines[0].removeprefix("# ").split(",")
        rows = [dict(zip(header, line.split(","), strict=False)) for line in lines[1:] if line]
        return [r for r in rows if r["pxname"] == "app" and r["svname"] not in _AGGREGATES]

    def server_states(self) -> dict[str, str]:
        """Each instance's state as HAProxy sees it ("UP", "DOWN", ...)."""
        return {row["svname"]: row["status"] for row in self._stats()}

    def server_sessions(self) -> dict[str, int]:
        """Requests (sessions) HAProxy has sent each instance so far."""
        return {row["svname"]: int(row["stot"] or 0) for row in self._stats()}

    def wait_for_states(self, wanted: dict[str, str], timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = self.server_states()
            if all(states.get(name, "").startswith(state) for name, state in wanted.items()):
                return
            time.sleep(0.1)
        raise TopologyError(f"HAProxy sees {self.server_states()}, expected {wanted}")
