"""``flashsale serve``: prepare the database, then run the HTTP server."""

from __future__ import annotations

import os

import click

from flashsale.cli.common import prepare_database, settings_or_exit, setup_logging
from flashsale.config import ENVIRONMENT
from flashsale.logs import get_logger, public_settings
from flashsale.metrics_dir import prepare_multiprocess_dir

log = get_logger("flashsale.cli")


@click.command()
@click.option("--host", help="Address to bind. [env APP_HOST; default 127.0.0.1]")
@click.option("--port", type=int, help="Port to listen on. [env APP_PORT; default 8080]")
@click.option("--workers", type=int, help="Server processes. [env WEB_WORKERS; default 2]")
@click.option(
    "--strategy",
    type=click.Choice(["batched", "transaction"]),
    help="How claims reach the database. [env CLAIM_STRATEGY; default batched]",
)
def serve(host: str | None, port: int | None, workers: int | None, strategy: str | None) -> None:
    """Serve the HTTP API: create the database if missing, migrate, then run
    Granian with several worker processes."""
    settings = settings_or_exit(
        app_host=host, app_port=port, workers=workers, claim_strategy=strategy
    )
    setup_logging(settings.log_level)
    metrics_dir = prepare_multiprocess_dir()  # before anything imports prometheus_client
    log.info("configuration", metrics_dir=str(metrics_dir), **public_settings(settings))
    dsn = prepare_database(settings)
    # Workers are separate processes that read their settings from the
    # environment: hand them the resolved database and the CLI's choices.
    os.environ[ENVIRONMENT["database_url"]] = dsn
    for field in ("app_host", "app_port", "workers", "claim_strategy"):
        value = getattr(settings, field)
        os.environ[ENVIRONMENT[field]] = str(getattr(value, "value", value))
    from flashsale.server import run_server

    run_server(settings)
