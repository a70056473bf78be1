"""Loads the named queries of ``queries.sql`` (request time),
``startup.sql`` (start-up steps) and ``admin.sql`` (the tools': test and
bench databases) once, so SQL lives in .sql files only."""

import re
from functools import cache
from importlib.resources import files

_HEADER = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def parse_queries(text: str) -> dict[str, str]:
    """Split a file of ``-- name: x`` sections into ``{"x": "<sql>"}``.

    Comment lines are kept out of the SQL; text before the first header is ignored.
    """
    parts = _HEADER.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        lines = [line for line in body.splitlines() if not line.lstrip().startswith("--")]
        queries[name] = "\n".join(lines).strip().rstrip(";")
    return queries


@cache
def load_queries(file_name: str = "queries.sql") -> dict[str, str]:
    return parse_queries(files("flashsale.storage").joinpath(file_name).read_text())


def query(name: str) -> str:
    return load_queries()[name]


def admin_query(name: str) -> str:
    return load_queries("admin.sql")[name]


def startup_query(name: str) -> str:
    return load_queries("startup.sql")[name]


def quote_identifier(name: str) -> str:
    """A name as a quoted SQL identifier, for the DDL of startup.sql and
    admin.sql that takes no parameters ({database}, {table})."""
    return '"' + name.replace('"', '""') + '"'
