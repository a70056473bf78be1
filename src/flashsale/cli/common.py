"""What every command shares: settings, logging, a ready database."""

from __future__ import annotations

import asyncio
import logging

import click

from flashsale.config import Settings, SettingsError, load_settings, redact_dsn
from flashsale.storage.database import migrate
from flashsale.storage.embedded import start_embedded, with_database

log = logging.getLogger("flashsale")


def settings_or_exit(**overrides: object) -> Settings:
    try:
        return load_settings(**overrides)
    except SettingsError as error:
        raise click.UsageError(f"invalid configuration: {error}") from None


def setup_logging(level: str) -> None:
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
