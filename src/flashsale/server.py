"""Granian, the Rust HTTP server that runs the ASGI app in worker processes."""

from __future__ import annotations

from granian.constants import Interfaces, Loops
from granian.server import Server

from flashsale.config import Settings


class _Server(Server):  # type: ignore[misc,valid-type]
    def signal_handler_interrupt(self, *args: object, **kwargs: object) -> None:
        # A second SIGTERM/SIGINT arriving while the first handler is inside
        # threading.Event.set() would re-enter its non-reentrant lock and hang
        # the main process forever (seen with `uv run` forwarding signals).
        if self.interrupt_signal:
            return
        super().signal_handler_interrupt(*args, **kwargs)


def run_server(settings: Settings) -> None:
    """Blocks until Granian stops (SIGINT/SIGTERM: stop accepting, finish
    requests in flight, run each worker's shutdown, exit)."""
    _Server(
        "flashsale.http.app:create_app",
        factory=True,
        address=settings.app_host,
        port=settings.app_port,
        interface=Interfaces.ASGI,
        workers=settings.workers,
        loop=Loops.uvloop,
        backlog=4096,
        log_access=False,
        workers_kill_timeout=8,
    ).serve()
