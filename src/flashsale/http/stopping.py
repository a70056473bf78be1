"""Knowing that the worker is stopping, so that endless responses (the
dashboard's event streams) end at once instead of holding Granian's graceful
shutdown until it kills the worker.

Granian's worker watches SIGTERM/SIGINT through the event loop's signal
handlers, which leave a no-op at the Python level. Chaining our own Python-level
handler in front of that no-op keeps Granian's handling intact (the loop still
sees the signal through its wakeup fd) and tells us as well."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

Handler = Callable[[int, FrameType | None], Any]

_stopping = threading.Event()
_installed = False


def stopping() -> bool:
    return _stopping.is_set()


def watch_stop_signals() -> None:
    """Idempotent. Installs nothing outside a server worker (no loop-level
    handler to chain to, e.g. in tests run in-process)."""
    global _installed
    if _installed or threading.current_thread() is not threading.main_thread():
        return
    _installed = True
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)
        if callable(previous):
            signal.signal(sig, _chained(previous))


def _chained(previous: Handler) -> Handler:
    def handler(signum: int, frame: FrameType | None) -> None:
        _stopping.set()
        previous(signum, frame)

    return handler
