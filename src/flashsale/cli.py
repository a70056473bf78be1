"""The ``flashsale`` command line."""

from __future__ import annotations

import asyncio
import logging
import os

import click

from flashsale import __version__
from flashsale.config import ENVIRONMENT, Settings, SettingsError, load_settings, redact_dsn
from flashsale.storage.database import migrate
from flashsale.storage.embedded import start_embedded, with_database

log = logging.getLogger("flashsale")


def _settings(**overrides: object) -> Settings:
    try:
        return load_settings(**overrides)
    except SettingsError as error:
        raise click.UsageError(f"invalid configuration: {error}") from None


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def prepare_database(settings: Settings) -> str:
    """The URL of a database that is up, exists and is migrated. With no
    DATABASE_URL or DB_HOST, that is the embedded server, started here."""
    if settings.uses_embedded_database:
        uri = start_embedded(settings.data_dir)
        dsn = with_database(uri, settings.db_name)
        log.info(
            "no DATABASE_URL or DB_HOST set: using embedded PostgreSQL with data in %s",
            (settings.data_dir / "pgdata").resolve(),
        )
    else:
        dsn = settings.dsn()
        log.info("using PostgreSQL at %s", redact_dsn(dsn))
    applied = asyncio.run(migrate(dsn))
    for migration in applied:
        log.info("applied migration %04d_%s", migration.version, migration.name)
    return dsn


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(__version__, prog_name="flashsale")
def main() -> None:
    """flashsale: a flash-sale coupon service on PostgreSQL.

    Configuration comes from the environment (APP_PORT, DATABASE_URL or
    DB_HOST/DB_PORT/DB_USER/DB_PASSWORD/DB_NAME/DB_SSLMODE, CLAIM_STRATEGY,
    ...; see the README). With no DATABASE_URL and no DB_HOST, an embedded
    PostgreSQL is started with its data in FLASHSALE_DATA_DIR (./.flashsale).
    """


@main.command()
@click.option("--host", help="Address to bind. [env APP_HOST; default 0.0.0.0]")
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
    settings = _settings(app_host=host, app_port=port, workers=workers, claim_strategy=strategy)
    _setup_logging(settings.log_level)
    dsn = prepare_database(settings)
    # Workers are separate processes that read their settings from the
    # environment: hand them the resolved database and the CLI's choices.
    os.environ[ENVIRONMENT["database_url"]] = dsn
    for field in ("app_host", "app_port", "workers", "claim_strategy"):
        value = getattr(settings, field)
        os.environ[ENVIRONMENT[field]] = str(getattr(value, "value", value))
    from flashsale.server import run_server

    run_server(settings)


@main.command(name="migrate")
def migrate_command() -> None:
    """Create the database if missing and apply pending migrations, then exit."""
    settings = _settings()
    _setup_logging(settings.log_level)
    prepare_database(settings)
    click.echo("database is up to date")
