"""The service's server-side timeouts, stored as its role's defaults in its
database at start-up (migration 0005 explains why not startup parameters)."""

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


async def store_session_defaults(dsn: str, settings: Settings) -> bool:
    """On the primary, as the serving role (``dsn`` is the serving URL, so a
    MIGRATION_DATABASE_URL with another role does not take them instead).
    Returns whether the stored values changed."""
    primary = await find_primary(dsn, statement_cache_size=settings.db_statement_cache_size)
    timeouts = Timeouts.from_settings(settings)
    connection = await asyncpg.connect(
        primary, statement_cache_size=settings.db_statement_cache_size
    )
    try:
        changed = await connection.fetchval(
            query("store_session_defaults"),
            timeouts.statement,
            timeouts.lock,
            timeouts.idle_in_transaction,
        )
    finally:
        await connection.close()
    return bool(changed)
