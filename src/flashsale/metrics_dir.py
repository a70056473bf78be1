"""Where Granian's worker processes keep their metric values.

Apart from flashsale.metrics because prometheus_client decides, when first
imported, whether values go to files in PROMETHEUS_MULTIPROC_DIR: the CLI
process sets the variable here before anything imports prometheus_client.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from collections.abc import MutableMapping
from pathlib import Path

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class MetricsSetupError(RuntimeError):
    """prometheus_client was imported before the directory was chosen."""


def prepare_multiprocess_dir(environ: MutableMapping[str, str] | None = None) -> Path:
    """A fresh empty directory for the workers' metric files (removed at
    exit), unless the user chose one (created if missing, never emptied)."""
    if "prometheus_client" in sys.modules:
        raise MetricsSetupError("prometheus_client was imported before PROMETHEUS_MULTIPROC_DIR")
    env = os.environ if environ is None else environ
    if chosen := env.get(MULTIPROC_ENV):
        path = Path(chosen)
        path.mkdir(parents=True, exist_ok=True)
        return path
    path = Path(tempfile.mkdtemp(prefix="flashsale-metrics-"))
    env[MULTIPROC_ENV] = str(path)
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path
