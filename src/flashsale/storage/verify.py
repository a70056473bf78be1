"""Checks the invariants on a live database: what ``flashsale verify`` and the
test suite use to prove nothing was oversold, doubled or lost."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from flashsale.storage.queries import query


@dataclass(frozen=True, slots=True)
class Violation:
    coupon: str
    amount: int
    remaining_amount: int
    claims: int
    duplicate_claims: int

    def describe(self) -> str:
        return (
            f"coupon {self.coupon!r}: amount {self.amount}, remaining {self.remaining_amount}, "
            f"{self.claims} claims ({self.duplicate_claims} duplicated); expected "
            f"0 <= remaining <= amount and amount - remaining = claims"
        )


async def find_violations(connection: asyncpg.Connection[asyncpg.Record]) -> list[Violation]:
    rows = await connection.fetch(query("find_violations"))
    return [Violation(*row) for row in rows]
