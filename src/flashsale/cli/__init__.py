"""The ``flashsale`` command line: one module per command, registered here."""

from __future__ import annotations

import click

from flashsale import __version__
from flashsale.cli.bench import bench
from flashsale.cli.deliver import deliver_command
from flashsale.cli.migrate import migrate_command
from flashsale.cli.serve import serve
from flashsale.cli.verify import verify_command
from flashsale.cli.verify_draw import verify_draw_command


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(__version__, prog_name="flashsale")
def main() -> None:
    """flashsale: a flash-sale coupon service on PostgreSQL.

    Configuration comes from the environment (APP_PORT, DATABASE_URL or
    DB_HOST/DB_PORT/DB_USER/DB_PASSWORD/DB_NAME/DB_SSLMODE, CLAIM_STRATEGY,
    ...; see docs/operations.md). With no DATABASE_URL and no DB_HOST, an embedded
    PostgreSQL is started with its data in FLASHSALE_DATA_DIR (./.flashsale).
    """


main.add_command(serve)
main.add_command(migrate_command)
main.add_command(bench)
main.add_command(verify_command)
main.add_command(deliver_command)
main.add_command(verify_draw_command)
