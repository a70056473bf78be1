"""The service's server-side timeouts, on its own sessions only: stored in
the database at start-up (service_timeouts, for PgBouncer's connect_query)
and applied to every connection its pools open. Not the role's defaults,
which an operator's session as the same role would get too (migration 0016)."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from flashsale.config import Settings
from flashsale.storage.primary import find_primary
from flashsale.storage.queries import query


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Milliseconds, as PostgreSQL's settings take them."""

    statement: int
    lock: int
    idle_in_transaction: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Timeouts:
        # A statement stuck on a lock hits lock_timeout first (same bound); a
        # transaction left open by a vanished client goes after twice that.
        statement_ms = int(settings.db_statement_timeout * 1000)
        return cls(statement_ms, statement_ms, statement_ms * 2)

    def as_settings(self) -> tuple[str, str, str]:
        """For set_config, which takes text."""
        return str(self.statement), str(self.lock), str(self.idle_in_transaction)


async def store_service_timeouts(dsn: str, settings: Settings) -> bool:
    """On the primary, as the serving role (``dsn`` is the serving URL, so
    that role's 0005 defaults are the ones reset when a
    MIGRATION_DATABASE_URL names another). Returns whether the stored
    values changed."""
    primary = await find_primary(dsn, statement_cache_size=settings.db_statement_cache_size)
    timeouts = Timeouts.from_settings(settings)
    connection = await asyncpg.connect(
        primary, statement_cache_size=settings.db_statement_cache_size
    )
    try:
        changed = await connection.fetchval(
            query("store_service_timeouts"),
            timeouts.statement,
            timeouts.lock,
            timeouts.idle_in_transaction,
        )
    finally:
        await connection.close()
    return bool(changed)


async def apply_timeouts(
    connection: asyncpg.Connection[asyncpg.Record], timeouts: Timeouts
) -> None:
    """This session takes the service's timeouts (session-level: they last
    until the connection closes, since the pool never sends RESET ALL)."""
    await connection.execute(query("apply_timeouts"), *timeouts.as_settings())
