"""Granian, the Rust HTTP server that runs the ASGI app in worker processes."""

from __future__ import annotations

import gc

from granian.constants import HTTPModes, Interfaces, Loops
from granian.http import HTTP1Settings
from granian.log import LogLevels
from granian.server import Server

from flashsale.config import Settings
from flashsale.logs import logging_config

HEADER_READ_TIMEOUT_MS = 10_000


class _Server(Server):  # type: ignore[misc,valid-type]
    def signal_handler_interrupt(self, *args: object, **kwargs: object) -> None:
        # A second SIGTERM/SIGINT arriving while the first handler is inside
        # threading.Event.set() would re-enter its non-reentrant lock and hang
        # the main process forever (seen with `uv run` forwarding signals).
        if self.interrupt_signal:
            return
        super().signal_handler_interrupt(*args, **kwargs)


# Young-generation collections every 700 allocations stood out in a worker's
# profile under load (py-spy --native: gc_collect_main; docs/benchmarks.md,
# "Where the time goes"); requests allocate short-lived, mostly acyclic
# objects, so collect less often. Forked workers inherit it.
GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc() -> None:
    """Fewer collections, and what is loaded before the workers fork stays out
    of them (and out of copy-on-write) for good."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


APP_FACTORY = "flashsale.wiring:create_app"


def run_server(settings: Settings, target: str = APP_FACTORY, *, factory: bool = True) -> None:
    """Blocks until Granian stops (SIGINT/SIGTERM: stop accepting, finish
    requests in flight, run each worker's shutdown, exit). ``target``: the
    service's app factory, or (for the bench's raw ceiling) another ASGI app
    served in exactly the same way."""
    tune_gc()
    _Server(
        target,
        factory=factory,
        address=settings.app_host,
        port=settings.app_port,
        interface=Interfaces.ASGI,
        # HTTP/1 only: HTTP/2 (Granian's "auto" gives it to a client with
        # prior knowledge) multiplexes up to 200 streams on one connection,
        # past every per-connection bound of the service and its front door.
        http=HTTPModes.http1,
        websockets=False,  # no route uses them
        workers=settings.workers,
        loop=Loops.uvloop,
        backlog=4096,
        # A client that sends half a header and stalls loses its connection
        # after this long (Granian's default is 30 s); it never blocks others.
        http1_settings=HTTP1Settings(header_read_timeout=HEADER_READ_TIMEOUT_MS),
        log_access=False,  # the app's own access log (LOG_ACCESS) carries request ids
        log_level=_granian_level(settings.log_level),
        log_dictconfig=logging_config(settings.log_level),  # Granian's lines as JSON too
        workers_kill_timeout=settings.shutdown_timeout,
    ).serve()


def _granian_level(level: str) -> LogLevels:
    try:
        return LogLevels(level.lower())
    except ValueError:
        return LogLevels.info
