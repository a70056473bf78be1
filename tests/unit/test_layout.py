"""House rules a reviewer would otherwise check by hand: SQL lives in .sql
files (storage/queries.sql, schema.sql, migrations), never in a Python
string; every test file has a name of its own, so a failure's file name says
which test it is. Plain text parsing, no database."""

from __future__ import annotations

import ast
import re
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "flashsale"
TESTS = ROOT / "tests"

# A statement at the start of a string: what asyncpg would be handed. Prose
# that names a statement mid-sentence ("waits in the INSERT") is not one.
SQL_STATEMENT = re.compile(
    r"^\s*(SELECT|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|WITH\s+\w+\s+AS|"
    r"CREATE|DROP|ALTER|TRUNCATE|SET\s+(LOCAL|SESSION)|LOCK\s+TABLE)\b"
)


def strings_of(path: Path) -> list[tuple[int, str]]:
    """Every string constant in a module, docstrings included, with its line."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


def test_no_python_module_of_the_product_carries_sql() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}: {text.strip()[:60]!r}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for line, text in strings_of(path)
        if SQL_STATEMENT.match(text)
    ]
    assert found == [], "SQL belongs in storage/queries.sql:\n" + "\n".join(found)


def test_every_test_file_has_a_name_of_its_own() -> None:
    names = Counter(
        path.name for path in TESTS.rglob("test_*.py") if "__pycache__" not in path.parts
    )
    assert [name for name, count in names.items() if count > 1] == []
