"""What every command shares: settings, logging, a ready database."""

from __future__ import annotations

import asyncio
import logging

import click

from flashsale.config import Settings, SettingsError, load_settings, redact_dsn
from flashsale.logs import configure_logging, protect_secrets
from flashsale.storage.database import migrate
from flashsale.storage.embedded import start_embedded, with_database
from flashsale.storage.errors import DatabaseUnreachable, unreachable_as_error
from flashsale.storage.migrations import Migration
from flashsale.storage.pool import ConnectionsExceeded, check_connections, connections_needed
from flashsale.storage.primary import find_primary, until_primary
from flashsale.storage.session_defaults import Timeouts, store_service_timeouts

log = logging.getLogger("flashsale")


def settings_or_exit(**overrides: object) -> Settings:
    try:
        settings = load_settings(**overrides)
    except SettingsError as error:
        raise click.UsageError(f"invalid configuration: {error}") from None
    protect_secrets(settings)
    return settings


def setup_logging(level: str) -> None:
    """JSON lines through structlog (flashsale.logs), stdlib loggers included."""
    configure_logging(level)


def prepare_database(settings: Settings) -> str:
    """The URL of a database that is up, exists and is migrated. With no
    DATABASE_URL or DB_HOST, that is the embedded server, started here."""
    if settings.uses_embedded_database:
        uri = start_embedded(settings.data_dir, connections=connections_needed(settings))
        dsn = migration_dsn = with_database(uri, settings.db_name)
        log.info(
            "no DATABASE_URL or DB_HOST set: using embedded PostgreSQL with data in %s",
            (settings.data_dir / "pgdata").resolve(),
        )
    else:
        dsn, migration_dsn = settings.dsn(), settings.migration_dsn()
        log.info("using PostgreSQL at %s", redact_dsn(dsn))
        if migration_dsn != dsn:
            log.info("creating and migrating through %s", redact_dsn(migration_dsn))
    try:
        with unreachable_as_error():
            applied = asyncio.run(_prepare(settings, dsn, migration_dsn))
    except DatabaseUnreachable as error:
        # One line for the operator, no trace: the start-up needs the database.
        raise click.ClickException(
            f"cannot prepare the database at {redact_dsn(migration_dsn)}: {error}"
        ) from None
    except ConnectionsExceeded as error:
        raise click.ClickException(f"refusing to start: {error}") from None
    for migration in applied:
        log.info("applied migration %04d_%s", migration.version, migration.name)
    return dsn


async def _prepare(settings: Settings, dsn: str, migration_dsn: str) -> list[Migration]:
    """Create and migrate (on the primary), store the service's timeouts and
    check that its pools fit the server, before any worker opens its pool; waits for a
    writable primary while there is none (a failover, a fresh load balancer)."""
    return await until_primary(lambda: _prepare_once(settings, dsn, migration_dsn))


async def _prepare_once(settings: Settings, dsn: str, migration_dsn: str) -> list[Migration]:
    applied = await migrate(
        migration_dsn,
        statement_cache_size=settings.db_statement_cache_size,
        timeouts=Timeouts.from_settings(settings),
    )
    if await store_service_timeouts(dsn, settings):
        log.info("stored the service's timeouts: %s", Timeouts.from_settings(settings))
    primary = await find_primary(dsn, statement_cache_size=settings.db_statement_cache_size)
    log.info(await check_connections(primary, settings))
    return applied
