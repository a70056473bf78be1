"""``flashsale verify``: prove on a live database that nothing was oversold,
doubled or lost. Exits 1, naming each coupon, on any violation."""

from __future__ import annotations

import asyncio

import click
from rich.console import Console
from rich.table import Table

from flashsale.cli.common import prepare_database, settings_or_exit, setup_logging
from flashsale.config import redact_dsn
from flashsale.storage.errors import DatabaseUnreachable
from flashsale.storage.verify import Report, verify_database


def _show(console: Console, where: str, report: Report) -> None:
    if not report.violations:
        console.print(
            f"[green]ok[/green] {report.coupons} coupons, {report.claims} claims in {where}: "
            "stock within bounds, stock matches claims, no duplicate claims"
        )
        return
    console.print(f"checked {where}", highlight=False)
    table = Table(title="invariant violations")
    for column in ("coupon", "amount", "remaining", "claims", "duplicated"):
        table.add_column(column)
    for v in report.violations:
        table.add_row(
            v.coupon, str(v.amount), str(v.remaining_amount), str(v.claims), str(v.duplicate_claims)
        )
    console.print(table)
    for v in report.violations:
        console.print(f"[red]violation[/red] {v.describe()}", highlight=False)
    console.print(f"[red]{len(report.violations)} of {report.coupons} coupons break an invariant")


@click.command(name="verify")
@click.option(
    "--database-url",
    help="PostgreSQL URL to check. [default: the configured database, as for serve]",
)
def verify_command(database_url: str | None) -> None:
    """Check every invariant on a live database (stock bounds, stock equals
    amount minus claims, one claim per user per coupon); exit 1 on any violation."""
    settings = settings_or_exit()
    setup_logging(settings.log_level)
    dsn = database_url or prepare_database(settings)
    try:
        report = asyncio.run(
            verify_database(dsn, statement_cache_size=settings.db_statement_cache_size)
        )
    except DatabaseUnreachable as error:
        raise click.ClickException(f"cannot check {redact_dsn(dsn)}: {error}") from None
    _show(Console(), redact_dsn(dsn), report)
    if report.violations:
        raise SystemExit(1)
