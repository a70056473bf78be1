"""A primary and a streaming standby from Debian's PostgreSQL 15 binaries,
on loopback ports of their own, run as the postgres account (PostgreSQL
refuses root)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from flashsale.bench.server import free_port

BIN = Path("/usr/lib/postgresql/15/bin")


def _as_postgres() -> dict[str, object]:
    if os.geteuid() != 0:
        return {}
    account = pwd.getpwnam("postgres")
    return {"user": account.pw_uid, "group": account.pw_gid}


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, **_as_postgres())  # type: ignore[call-overload]


@dataclass
class Node:
    data: Path
    port: int

    def start(self) -> None:
        _run(str(BIN / "pg_ctl"), "-D", str(self.data), "-w", "-l", f"{self.data}.log", "start")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            _run(str(BIN / "pg_ctl"), "-D", str(self.data), "-w", "-m", "immediate", "stop")

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass
class Replicated:
    primary: Node
    standby: Node

    def url(self, database: str, *hosts: Node) -> str:
        listed = ",".join(node.host for node in hosts)
        return f"postgresql://postgres@{listed}/{database}?target_session_attrs=read-write"

    def stop(self) -> None:
        self.standby.stop()
        self.primary.stop()


def start_replicated(folder: Path) -> Replicated:
    """initdb a primary, pg_basebackup -R a standby from it, start both."""
    if not (BIN / "initdb").exists():
        pytest.skip("PostgreSQL 15 binaries missing: apt-get install postgresql-15")
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    primary = Node(folder / "primary", free_port())
    _run(str(BIN / "initdb"), "-D", str(primary.data), "-U", "postgres", "--auth=trust")
    with (primary.data / "postgresql.conf").open("a") as conf:
        conf.write(
            f"port = {primary.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n"
            "wal_level = replica\nmax_wal_senders = 4\nfsync = off\n"
        )
    with (primary.data / "pg_hba.conf").open("a") as hba:
        hba.write("host replication postgres 127.0.0.1/32 trust\n")
    primary.start()
    standby = Node(folder / "standby", free_port())
    _run(
        str(BIN / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
        "-D", str(standby.data), "-R", "-X", "stream",
    )  # fmt: skip
    with (standby.data / "postgresql.conf").open("a") as conf:
        conf.write(f"port = {standby.port}\n")
    standby.start()
    return Replicated(primary, standby)
