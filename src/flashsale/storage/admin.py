"""Throwaway databases and seeded data for the test suite and the bench:
databases created (fresh, or as copies of a migrated template) and dropped
on a server, coupons with many claims. Never used by the service itself."""

from __future__ import annotations

from contextlib import suppress
from importlib.resources import files
from urllib.parse import unquote, urlsplit, urlunsplit

import asyncpg

from flashsale.storage.queries import admin_query, startup_query


def database_url(server_url: str, database: str) -> str:
    """The server's URL pointing at another database."""
    return urlunsplit(urlsplit(server_url)._replace(path=f"/{database}"))


def database_name(url: str) -> str:
    return unquote(urlsplit(url).path.lstrip("/")) or "postgres"


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def create_database(server_url: str, database: str, *, template: str | None = None) -> str:
    """A new database on the server of ``server_url`` (a copy of ``template``
    when given); its URL."""
    if template is None:
        sql = startup_query("create_database").format(database=quote_identifier(database))
    else:
        sql = admin_query("create_database_from_template").format(
            database=quote_identifier(database), template=quote_identifier(template)
        )
    await _run_on_server(server_url, sql)
    return database_url(server_url, database)


async def drop_database(server_url: str, url: str) -> None:
    """Drop the database ``url`` names, through a connection to ``server_url``."""
    sql = admin_query("drop_database").format(database=quote_identifier(database_name(url)))
    await _run_on_server(server_url, sql)


async def seed_coupon(
    url: str, name: str, amount: int, *, claims: int = 0, hold_seconds: int | None = None
) -> None:
    """A coupon of ``amount`` with ``claims`` claims by user-1 .. user-N
    (holds, when ``hold_seconds`` is set)."""
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(admin_query("seed_coupon"), name, amount, hold_seconds)
        if claims:
            await connection.execute(admin_query("seed_claims"), name, claims)
            await connection.execute(admin_query("analyze_claims"))
    finally:
        await connection.close()


async def seed_coupons(url: str, names: list[str], amount: int) -> None:
    """Coupons of ``amount`` each, one per name, over one connection."""
    connection = await asyncpg.connect(url)
    try:
        arguments = [(name, amount, None) for name in names]
        await connection.executemany(admin_query("seed_coupon"), arguments)
    finally:
        await connection.close()


async def coupons_stock(url: str, names: list[str]) -> tuple[int, int]:
    """The coupons' summed amount and remaining amount."""
    connection = await asyncpg.connect(url)
    try:
        row = await connection.fetchrow(admin_query("coupons_stock"), names)
    finally:
        await connection.close()
    assert row is not None
    return row["amount"], row["remaining"]


def schema_sql() -> str:
    """schema.sql: the schema the migrations build, in one file."""
    return files("flashsale.storage").joinpath("schema.sql").read_text()


async def load_schema(url: str) -> None:
    """Build the schema from schema.sql alone, without the migrations."""
    await _run_on_server(url, schema_sql())


async def describe_schema(url: str) -> list[tuple[str, str, str]]:
    """(kind, name, definition) of every object of the public schema."""
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(admin_query("describe_schema"))
    finally:
        await connection.close()
    return [(row["kind"], row["name"], row["definition"]) for row in rows]


async def _run_on_server(server_url: str, sql: str) -> None:
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(sql)
    finally:
        await admin.close()


async def schedule_expiries(url: str, coupon: str, users: list[str], seconds: float) -> None:
    """The bench's expiries: ``users``' claims expire at random instants over
    the next ``seconds`` (the sweepers and the claim path take them back)."""
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(admin_query("schedule_expiries"), coupon, users, seconds)
    finally:
        await connection.close()


async def count_unseeded_claims(url: str, coupon: str) -> int:
    return await _count(url, "count_unseeded_claims", coupon)


async def count_entries(url: str, coupon: str) -> int:
    """Entry rows of raffle ``coupon`` (the bench's raffle entries scenario)."""
    return await _count(url, "count_entries", coupon)


async def _count(url: str, name: str, coupon: str) -> int:
    connection = await asyncpg.connect(url)
    try:
        count: int = await connection.fetchval(admin_query(name), coupon)
    finally:
        await connection.close()
    return count


async def settle_database(url: str) -> None:
    """Vacuumed, analyzed and (where allowed) checkpointed: what a bench run
    leaves behind is cleaned up before the next one starts."""
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(admin_query("vacuum_database"))
        with suppress(asyncpg.InsufficientPrivilegeError):
            await connection.execute(admin_query("checkpoint"))
    finally:
        await connection.close()
