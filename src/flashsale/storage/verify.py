"""Checks the invariants on a live database: what ``flashsale verify`` and the
test suite use to prove nothing was oversold, doubled or lost."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from flashsale.storage.errors import unreachable_as_error
from flashsale.storage.queries import query, startup_query


@dataclass(frozen=True, slots=True)
class Violation:
    coupon: str
    amount: int
    remaining_amount: int
    claims: int
    duplicate_claims: int
    ended_but_live: int = 0  # claims recorded as ended (unit returned) yet still live

    def describe(self) -> str:
        ended = f", {self.ended_but_live} ended yet live" if self.ended_but_live else ""
        return (
            f"coupon {self.coupon!r}: amount {self.amount}, remaining {self.remaining_amount}, "
            f"{self.claims} claims ({self.duplicate_claims} duplicated){ended}; expected "
            f"0 <= remaining <= amount, amount - remaining = claims (held or redeemed), "
            f"and a claim that ended no longer live"
        )


@dataclass(frozen=True, slots=True)
class Report:
    coupons: int
    claims: int
    violations: list[Violation]


async def find_violations(connection: asyncpg.Connection[asyncpg.Record]) -> list[Violation]:
    rows = await connection.fetch(query("find_violations"))
    return [Violation(*row) for row in rows]


async def verify_database(dsn: str, *, statement_cache_size: int = 100) -> Report:
    """Counts and violations of the database at ``dsn``; DatabaseUnreachable
    when it cannot be read. ``statement_cache_size``: 0 behind a
    transaction-mode pooler (DB_STATEMENT_CACHE_SIZE)."""
    with unreachable_as_error():
        connection = await asyncpg.connect(
            dsn, timeout=10, statement_cache_size=statement_cache_size
        )
        try:
            # One snapshot for the counts and the checks, even while claims go on.
            async with connection.transaction(isolation="repeatable_read", readonly=True):
                # A check of every claim may take longer than the service's
                # timeouts, which are the role's defaults: lift them here only.
                await connection.execute(startup_query("unbounded_transaction"))
                counts = await connection.fetchrow(query("count_coupons_and_claims"))
                assert counts is not None  # an aggregate always returns its row
                violations = await find_violations(connection)
        finally:
            await connection.close()
    return Report(counts["coupons"], counts["claims"], violations)
