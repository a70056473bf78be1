"""A Patroni cluster of its own, from Debian's packages (tests/ha and
`python -m tests.support.bench --topology ha`): etcd, three
PostgreSQL 15 nodes in synchronous_mode_strict, and HAProxy in front, all on
free loopback ports under one temporary folder. Configuration comes from
deploy/ (the same files the compose `ha` profile uses); only addresses, paths
and passwords are set here, through Patroni's and HAProxy's environment."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flashsale.bench.server import free_port
from tests.support.topology import DEPLOY

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PATRONI_CONFIG = DEPLOY / "patroni" / "patroni.yml"
HAPROXY_CONFIG = DEPLOY / "haproxy" / "patroni.cfg"
PASSWORD = "ha-test-secret"
DATABASE = "coupondb"

# Binary -> the Debian package that ships it, for skip reasons.
PACKAGES = {
    "patroni": "patroni",
    "patronictl": "patroni",
    "etcd": "etcd-server",
    "haproxy": "haproxy",
    str(PG_BIN / "postgres"): "postgresql-15",
}


def missing_packages() -> list[str]:
    missing = [pkg for binary, pkg in PACKAGES.items() if not shutil.which(binary)]
    return sorted(set(missing))


def _postgres_account() -> pwd.struct_passwd | None:
    """PostgreSQL refuses to run as root: run the nodes as `postgres` then."""
    if os.geteuid() != 0:
        return None
    return pwd.getpwnam("postgres")


@dataclass
class Node:
    name: str
    directory: Path
    pg_port: int
    rest_port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def log_path(self) -> Path:
        return self.directory / "patroni.log"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.pg_port}"

    def url(self, database: str = DATABASE) -> str:
        return f"postgresql://postgres:{PASSWORD}@{self.address}/{database}"

    def rest(self, path: str, timeout: float = 1.0) -> tuple[int, Any]:
        """Patroni's REST API: (status, JSON body); (0, None) when it is down."""
        url = f"http://127.0.0.1:{self.rest_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as reply:
                return reply.status, json.loads(reply.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")
        except (OSError, ValueError):
            return 0, None

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class Cluster:
    directory: Path
    nodes: list[Node]
    etcd_port: int
    etcd_peer_port: int
    haproxy_port: int
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    haproxy: subprocess.Popen[bytes] | None = None

    @property
    def multi_host_url(self) -> str:
        """The first documented way: every node listed, the driver picks the
        one that accepts writes."""
        hosts = ",".join(node.address for node in self.nodes)
        return (
            f"postgresql://postgres:{PASSWORD}@{hosts}/{DATABASE}?target_session_attrs=read-write"
        )

    @property
    def haproxy_url(self) -> str:
        """The second documented way: HAProxy sends to the node whose REST
        API answers /primary with 200."""
        return f"postgresql://postgres:{PASSWORD}@127.0.0.1:{self.haproxy_port}/{DATABASE}"

    # -- start and stop -------------------------------------------------

    def start(self) -> None:
        self._start_etcd()
        for node in self.nodes:
            self.start_node(node)
        self.wait_healthy(limit=90)
        self._start_haproxy()

    def _start_etcd(self) -> None:
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        client = f"http://127.0.0.1:{self.etcd_port}"
        command = [
            "etcd",
            "--name=ha",
            f"--data-dir={self.directory / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=ha={peer}",
            "--log-level=warn",
        ]
        self.processes.append(self._spawn(command, self.directory / "etcd.log", {}))
        _wait(lambda: _http_ok(f"{client}/health"), 30, "etcd did not start")

    def start_node(self, node: Node) -> None:
        node.directory.mkdir(parents=True, exist_ok=True)
        account = _postgres_account()
        if account is not None:
            os.chown(node.directory, account.pw_uid, account.pw_gid)
        env = {
            "PATRONI_NAME": node.name,
            "PATRONI_RESTAPI_LISTEN": f"127.0.0.1:{node.rest_port}",
            "PATRONI_RESTAPI_CONNECT_ADDRESS": f"127.0.0.1:{node.rest_port}",
            "PATRONI_ETCD3_HOSTS": f"127.0.0.1:{self.etcd_port}",
            "PATRONI_POSTGRESQL_LISTEN": node.address,
            "PATRONI_POSTGRESQL_CONNECT_ADDRESS": node.address,
            "PATRONI_POSTGRESQL_DATA_DIR": str(node.data_dir),
            "PATRONI_POSTGRESQL_BIN_DIR": str(PG_BIN),
            "PATRONI_POSTGRESQL_PGPASS": str(node.directory / "pgpass"),
            "PATRONI_SUPERUSER_PASSWORD": PASSWORD,
            "PATRONI_REPLICATION_PASSWORD": PASSWORD,
        }
        node.process = self._spawn(
            ["patroni", str(PATRONI_CONFIG)], node.log_path, env, user=account
        )

    def _start_haproxy(self) -> None:
        env = {"HA_LISTEN": f"127.0.0.1:{self.haproxy_port}"}
        for number, node in enumerate(self.nodes, start=1):
            env[f"HA_NODE{number}"] = node.address
            env[f"HA_CHECK{number}"] = str(node.rest_port)
        command = ["haproxy", "-db", "-f", str(HAPROXY_CONFIG)]
        self.haproxy = self._spawn(command, self.directory / "haproxy.log", env)

    def _spawn(
        self,
        command: list[str],
        log_path: Path,
        env: dict[str, str],
        user: pwd.struct_passwd | None = None,
    ) -> subprocess.Popen[bytes]:
        with log_path.open("ab") as log_file:
            process = subprocess.Popen(
                command,
                env={"PATH": os.environ["PATH"], "LANG": "C.UTF-8", **env},
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                user=user.pw_uid if user else None,
                group=user.pw_gid if user else None,
                extra_groups=[] if user else None,
                start_new_session=True,
            )
        self.processes.append(process)
        return process

    def stop(self) -> None:
        for node in self.nodes:
            self.kill_node(node)
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)

    # -- faults ---------------------------------------------------------

    def kill_node(self, node: Node) -> None:
        """kill -9 of Patroni and of PostgreSQL with every backend at once:
        the machine died."""
        victims = [p for p in [node.process.pid if node.process else None] if p]
        postmaster = node.postmaster_pid()
        if postmaster is not None:
            victims += [postmaster, *_children(postmaster)]
        for pid in victims:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if node.process is not None:
            node.process.wait(timeout=10)
        if postmaster is not None:
            _wait(lambda: not _alive(postmaster), 10, "postmaster survived kill -9")

    def stop_node(self, node: Node) -> None:
        """A clean stop: Patroni shuts PostgreSQL down (fast) and exits."""
        if node.process is not None and node.process.poll() is None:
            node.process.send_signal(signal.SIGTERM)
            node.process.wait(timeout=30)

    def patronictl(self, *args: str) -> str:
        env = {**os.environ, "PATRONICTL_CONFIG_FILE": str(self._ctl_config())}
        result = subprocess.run(
            ["patronictl", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"patronictl {args}: {result.stdout}{result.stderr}")
        return result.stdout

    def _ctl_config(self) -> Path:
        path = self.directory / "patronictl.yml"
        if not path.exists():
            path.write_text(f"scope: flashsale\netcd3:\n  hosts: 127.0.0.1:{self.etcd_port}\n")
        return path

    # -- state ----------------------------------------------------------

    def members(self) -> list[dict[str, Any]]:
        """Patroni's view of the cluster, from any node whose API answers."""
        for node in self.nodes:
            status, body = node.rest("/cluster")
            if status == 200 and body:
                members: list[dict[str, Any]] = body.get("members", [])
                return members
        return []

    def node(self, name: str) -> Node:
        return next(node for node in self.nodes if node.name == name)

    def leader(self) -> Node | None:
        for member in self.members():
            if member.get("role") == "leader" and member.get("state") == "running":
                return self.node(member["name"])
        return None

    def sync_standby(self) -> Node | None:
        for member in self.members():
            if member.get("role") == "sync_standby":
                return self.node(member["name"])
        return None

    def writable_leader(self) -> Node | None:
        """The node whose REST API answers /primary with 200 right now."""
        for node in self.nodes:
            if node.rest("/primary", timeout=0.5)[0] == 200:
                return node
        return None

    def is_healthy(self) -> bool:
        """A running leader, a synchronous standby, and every node streaming."""
        members = self.members()
        roles = sorted(m.get("role", "") for m in members)
        running = all(m.get("state") in ("running", "streaming") for m in members)
        return (
            len(members) == len(self.nodes)
            and running
            and roles.count("leader") == 1
            and "sync_standby" in roles
        )

    def wait_healthy(self, limit: float) -> None:
        _wait(self.is_healthy, limit, f"cluster not healthy: {self.members()}")

    def replicas(self) -> list[Node]:
        leader = self.leader()
        return [node for node in self.nodes if node is not leader]


@contextmanager
def running_cluster(nodes: int = 3) -> Iterator[Cluster]:
    # Not under pytest's basetemp (0700, root's): the postgres account must
    # traverse every folder above its data directory.
    directory = Path(tempfile.mkdtemp(prefix="flashsale-ha-"))
    directory.chmod(0o755)
    cluster = Cluster(
        directory,
        [
            Node(f"node{n}", directory / f"node{n}", free_port(), free_port())
            for n in range(1, nodes + 1)
        ],
        free_port(),
        free_port(),
        free_port(),
    )
    try:
        cluster.start()
        yield cluster
    except BaseException:
        _print_logs(cluster)
        raise
    finally:
        cluster.stop()
        if not os.environ.get("FLASHSALE_HA_KEEP"):  # set it to read the nodes' logs
            shutil.rmtree(directory, ignore_errors=True)


def _print_logs(cluster: Cluster) -> None:
    for node in cluster.nodes:
        if node.log_path.exists():
            print(f"--- {node.name} ---\n{node.log_path.read_text(errors='replace')[-4000:]}")


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == pid:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


def _wait(condition: Callable[[], bool], limit: float, failure: str) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise RuntimeError(failure)
