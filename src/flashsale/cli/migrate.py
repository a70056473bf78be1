"""``flashsale migrate``: bring the database schema up to date."""

from __future__ import annotations

import click

from flashsale.cli.common import prepare_database, settings_or_exit, setup_logging


@click.command(name="migrate")
def migrate_command() -> None:
    """Create the database if missing and apply pending migrations, then exit."""
    settings = settings_or_exit()
    setup_logging(settings.log_level)
    prepare_database(settings)
    click.echo("database is up to date")
