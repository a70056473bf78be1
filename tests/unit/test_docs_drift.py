"""The docs against the code they describe, so that a change to one without
the other fails CI: the README's package tree against src/ (and the files,
classes and methods it names), the configuration table against the
variables the settings read, the metrics table against the registered
metrics, the command-line synopsis against the commands' --help. No
database; plain text parsing."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from flashsale.cli import main
from flashsale.config import ENVIRONMENT
from flashsale.metrics import Metrics
from flashsale.metrics_dir import MULTIPROC_ENV

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "flashsale"
README = ROOT / "README.md"
OPERATIONS = ROOT / "docs" / "operations.md"

# The tree's rule, kept by hand: every module (*.py but __init__.py and
# __main__.py), every .sql file outside migrations/ and every package (a
# folder with __init__.py) has a line of its own; other files and folders
# (static/, migrations/, claim.lua) may have one. Each line is a name at two
# spaces of indent per level, then its description.
UNLISTED_MODULES = {"__init__.py", "__main__.py"}


def fenced_blocks(text: str) -> list[str]:
    return re.findall(r"^```[a-z]*\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def readme_tree() -> set[str]:
    """The paths the README's tree names, relative to src/flashsale ("http/",
    "http/app.py")."""
    block = next(b for b in fenced_blocks(README.read_text()) if b.startswith("src/flashsale/\n"))
    folders: list[str] = []
    listed = set()
    for line in block.splitlines()[1:]:
        name = line.split()[0]
        depth = (len(line) - len(line.lstrip(" "))) // 2 - 1
        assert depth <= len(folders), f"README tree: {line.strip()!r} is indented too deep"
        del folders[depth:]
        path = "".join(folders) + name
        listed.add(path)
        if name.endswith("/"):
            folders.append(name)
    return listed


def source_tree() -> set[str]:
    """The paths the rule above requires."""
    required = set()
    for path in PACKAGE.rglob("*"):
        relative = path.relative_to(PACKAGE)
        if "__pycache__" in relative.parts:
            continue
        module = path.suffix == ".py" and path.name not in UNLISTED_MODULES
        sql = path.suffix == ".sql" and "migrations" not in relative.parts
        if path.is_dir() and (path / "__init__.py").exists():
            required.add(f"{relative}/")
        elif module or sql:
            required.add(str(relative))
    return required


def test_every_path_in_the_readme_tree_exists() -> None:
    missing = sorted(p for p in readme_tree() if not (PACKAGE / p).exists())
    assert not missing, f"the README's tree names what src/flashsale does not have: {missing}"


def test_every_module_and_package_has_its_line_in_the_readme_tree() -> None:
    unlisted = sorted(source_tree() - readme_tree())
    assert not unlisted, f"add a line to the README's tree for: {unlisted}"


def test_every_file_the_readme_names_exists() -> None:
    """The claim path, the read path and "where to add" name files by their
    path under src/flashsale (``http/claims.py``) or the repository's."""
    text = re.sub(r"^```.*?^```", "", README.read_text(), flags=re.MULTILINE | re.DOTALL)
    named = set(re.findall(r"`([\w./-]+\.(?:py|sql|toml))`", text))
    missing = sorted(n for n in named if not (PACKAGE / n).exists() and not (ROOT / n).exists())
    assert not missing, f"the README names files that do not exist: {missing}"


def classes_in_source() -> dict[str, set[str]]:
    """Every class of src/flashsale with the names defined in its body."""
    classes: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                members = classes.setdefault(node.name, set())
                for item in node.body:
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                        members.add(item.name)
    return classes


def test_every_class_and_method_the_readme_names_exists() -> None:
    """``CouponService.claim``, ``Coalescer``: the claim path's steps."""
    classes = classes_in_source()
    named = re.findall(r"`([A-Z][a-z]\w*)(?:\.(\w+))?`", README.read_text())
    missing = sorted(
        f"{cls}.{member}" if member else cls
        for cls, member in named
        if cls not in classes or (member and member not in classes[cls])
    )
    assert not missing, f"the README names what src/flashsale does not define: {missing}"


def documented_metrics() -> dict[str, tuple[str, set[str]]]:
    """name -> (type, labels) from the metrics table of docs/operations.md."""
    section = OPERATIONS.read_text().split("### Metrics", 1)[1].split("\n### ", 1)[0]
    table = {}
    for row in re.findall(r"^\| `(flashsale_\w+)` \|(.*)$", section, flags=re.MULTILINE):
        name, rest = row
        kind, labels = (cell.strip() for cell in rest.split("|")[:2])
        # "`state` (`in_use`, `idle`)": the parentheses give a label's values.
        table[name] = (kind, set(re.findall(r"`(\w+)`", re.sub(r"\(.*?\)", "", labels))))
    return table


def registered_metrics() -> dict[str, tuple[str, set[str]]]:
    """name -> (type, labels) as /metrics exposes them (a counter's name
    gains _total)."""
    metrics = Metrics(CollectorRegistry())
    found = {}
    for metric in vars(metrics).values():
        if not isinstance(metric, MetricWrapperBase):
            continue
        (family,) = metric.describe()
        name = f"{family.name}_total" if family.type == "counter" else family.name
        # prometheus_client has no public accessor for a metric's label names.
        found[name] = (family.type, set(metric._labelnames))
    return found


def test_the_metrics_table_lists_every_registered_metric_as_it_is() -> None:
    assert documented_metrics() == registered_metrics()


def documented_variables() -> set[str]:
    """The variables of the Configuration table of docs/operations.md (a row
    may name two: `DB_POOL_MIN` / `DB_POOL_MAX`)."""
    section = OPERATIONS.read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (`[A-Z_]+`(?: / `[A-Z_]+`)*) \|", section, flags=re.MULTILINE)
    return {name for row in rows for name in re.findall(r"`([A-Z_]+)`", row)}


def test_the_configuration_table_lists_every_variable_the_settings_read() -> None:
    read = {*ENVIRONMENT.values(), MULTIPROC_ENV}
    assert documented_variables() == read


def synopsis() -> dict[str, str]:
    """command -> its synopsis text, from the Command line block of
    docs/operations.md: a line "flashsale COMMAND ...", then its indented
    continuation lines; "" for the line about --version and --help. Lines
    about other tools (not "flashsale ...") are not read here."""
    section = OPERATIONS.read_text().split("## Command line", 1)[1]
    block = fenced_blocks(section)[0]
    commands: dict[str, str] = {}
    command: str | None = None
    for line in block.splitlines():
        if line.startswith("flashsale "):
            command = line.split()[1]
            command = "" if command.startswith("-") else command
        elif not line.startswith(" "):
            command = None
        if command is not None:
            commands[command] = commands.get(command, "") + " " + line
    return commands


def help_text(*args: str) -> str:
    result = CliRunner().invoke(main, [*args, "--help"], prog_name="flashsale")
    assert result.exit_code == 0, result.output
    return result.output


def options(help_output: str) -> dict[str, set[str]]:
    """option -> its choices ({} when it takes no fixed set), from --help."""
    found = {}
    option = r"^\s+(?:-\w, )?(--[\w-]+)(?: \[([\w|]+)\])?"
    for name, choices in re.findall(option, help_output, re.MULTILINE):
        if name != "--help":
            found[name] = set(choices.split("|")) if "|" in choices else set()
    return found


def synopsis_options(text: str) -> dict[str, set[str]]:
    found = {}
    for name, value in re.findall(r"\[(--[\w-]+)(?: ([^\]]+))?\]", text):
        found[name] = set(value.split("|")) if "|" in value else set()
    return found


def test_the_synopsis_names_every_command() -> None:
    listed = re.findall(r"^  ([\w-]+)  ", help_text().split("Commands:", 1)[1], re.MULTILINE)
    assert set(listed) == set(synopsis()) - {""}
    assert "--version" in synopsis()[""]
    assert "--version" in options(help_text())


@pytest.mark.parametrize("command", sorted(main.commands))
def test_the_synopsis_of_each_command_matches_its_help(command: str) -> None:
    assert synopsis_options(synopsis()[command]) == options(help_text(command))
