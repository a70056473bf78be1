"""The product imports with its runtime dependencies alone: the wheel a user
installs (and the Docker image) has none of pyproject's development group, so
a module of `flashsale` importing one of them breaks `flashsale serve` there
while every test here passes."""

import subprocess
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, packages_distributions, requires
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PYPROJECT = Path(__file__).parents[2] / "pyproject.toml"

# Imports every module of flashsale in a fresh interpreter where the
# development-only top-level modules named in argv[1] cannot be imported.
IMPORT_ALL = """
import importlib, pkgutil, sys
blocked = set(sys.argv[1].split(","))
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in blocked:
            raise ModuleNotFoundError(f"{name} is a development dependency")
sys.meta_path.insert(0, Block())
import flashsale
for module in pkgutil.walk_packages(flashsale.__path__, "flashsale."):
    if not module.name.endswith("__main__"):
        importlib.import_module(module.name)
"""


def _runtime_closure() -> set[str]:
    """The distributions `flashsale` needs, transitively, extras followed."""
    seen: set[str] = set()
    todo: list[tuple[str, frozenset[str]]] = [("flashsale", frozenset())]
    while todo:
        name, extras = todo.pop()
        seen.add(canonicalize_name(name))
        try:
            texts = requires(name) or []
        except PackageNotFoundError:
            continue
        for requirement in map(Requirement, texts):
            wanted = any(
                requirement.marker is None or requirement.marker.evaluate({"extra": extra})
                for extra in ("", *extras)
            )
            if wanted and canonicalize_name(requirement.name) not in seen:
                todo.append((requirement.name, frozenset(requirement.extras)))
    return seen


def _development_only_modules() -> set[str]:
    groups = tomllib.loads(PYPROJECT.read_text())["dependency-groups"]["dev"]
    dev_only = {canonicalize_name(Requirement(text).name) for text in groups} - _runtime_closure()
    return {
        module
        for module, dists in packages_distributions().items()
        if dists and all(canonicalize_name(dist) in dev_only for dist in dists)
    }


def test_every_module_imports_without_the_development_dependencies() -> None:
    blocked = _development_only_modules()
    assert {"aiohttp", "pytest"} <= blocked  # the rule sees the group
    run = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL, ",".join(sorted(blocked))],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
