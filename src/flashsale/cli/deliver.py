"""``flashsale deliver``: webhook deliveries in a process of their own, so
they can be scaled apart from the claims (run serve with
WEBHOOK_DELIVERY=separate). Several such processes, and serve workers that
deliver, share the work without double deliveries (leases, SKIP LOCKED)."""

from __future__ import annotations

import asyncio
import os
import signal
from types import FrameType

import click

from flashsale.cli.common import prepare_database, settings_or_exit, setup_logging
from flashsale.config import Settings


@click.command(name="deliver")
@click.option(
    "--concurrency", type=int, help="POSTs in flight at once. [env WEBHOOK_CONCURRENCY; default 16]"
)
def deliver_command(concurrency: int | None) -> None:
    """Deliver webhooks until SIGTERM or SIGINT: prepare the database (as
    serve does), then lease, POST and record, in this process only."""
    for stopping in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stopping, _stop_before_started)
    settings = settings_or_exit(webhook_concurrency=concurrency)
    setup_logging(settings.log_level)
    dsn = prepare_database(settings)
    settings = settings_or_exit(webhook_concurrency=concurrency, database_url=dsn)
    # A lower CPU priority: where this process shares cores with serve
    # workers (and PostgreSQL), the scheduler runs the claims first and the
    # deliveries on what is left (nice(2): only ever raised, never lowered).
    os.nice(settings.webhook_deliver_nice)
    asyncio.run(_deliver(settings))


def _stop_before_started(signum: int, frame: FrameType | None) -> None:
    """A stop asked for while the process still starts (the database being
    prepared, the event loop not yet listening): nothing is leased yet, so it
    leaves at once and cleanly (a migration in progress rolls back). The
    event loop's handlers replace this one."""
    raise SystemExit(0)


async def _deliver(settings: Settings) -> None:
    from flashsale.wiring import run_deliveries  # the composition root, once settings are read

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for stopping in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(stopping, stop.set)
    await run_deliveries(settings, stop)
