"""The write side's storage: coupons created, claims decided (the claim
engine's ClaimStore and the service's CouponWriter). Each method runs the
query of queries.sql that bears its name and returns plain Python values.

Writes go through Connections.write (never cancelled once sent: a commit may
be waiting for its synchronous standby); reads carry a client-side timeout,
which may cancel them: a read commits nothing."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from flashsale.claims.ports import BatchResult, SoldOutRead
from flashsale.domain import ClaimOutcome, CouponExists, ServiceUnavailable
from flashsale.storage.connections import Connections
from flashsale.storage.pool import Connection
from flashsale.storage.queries import query

# What a health check reports when the database answers but cannot take writes.
_READ_ONLY = "no writable primary (the database is a read-only replica), retry shortly"
_NO_STANDBY = "commits are waiting for a synchronous standby, retry shortly"


class CouponStore:
    def __init__(self, connections: Connections) -> None:
        self._connections = connections
        self._connection = connections.connection
        self._write = connections.write
        self._read_timeout = connections.read_timeout

    async def ping(self) -> None:
        """Returns when the database would take a claim now; 503 naming why not."""
        async with self._connection() as connection:
            row = await connection.fetchrow(query("ping"), timeout=self._read_timeout)
        assert row is not None
        if row["read_only"]:
            await self._connections.drop_all()  # connected to a demoted primary
            raise ServiceUnavailable(_READ_ONLY)
        if row["no_standby"]:
            raise ServiceUnavailable(_NO_STANDBY)

    async def create_coupon(self, *, name: str, amount: int) -> None:
        async def create_coupon(connection: Connection) -> None:
            try:
                await connection.execute(query("create_coupon"), name, amount)
            except asyncpg.UniqueViolationError:
                raise CouponExists(f"coupon {name!r} already exists") from None

        await self._write(create_coupon)

    async def claim_many(self, coupon_name: str, user_ids: Sequence[str]) -> BatchResult:
        firsts = list(dict.fromkeys(user_ids))  # each user once, at their first arrival

        async def claim_many(connection: Connection) -> asyncpg.Record | None:
            return await connection.fetchrow(query("claim_many"), coupon_name, firsts)

        row = await self._write(claim_many)
        assert row is not None
        if row["coupon_id"] is None:
            return BatchResult([ClaimOutcome.NOT_FOUND] * len(user_ids), None, None)
        decided = _first_arrival_outcomes(firsts, row["claimed"], row["holders"])
        return BatchResult(_with_repeats(user_ids, decided), row["coupon_id"], row["remaining"])

    async def sold_out_batch(self, coupon_name: str, user_ids: Sequence[str]) -> SoldOutRead:
        async with self._connection() as connection:
            rows = await connection.fetch(
                query("sold_out_batch"), coupon_name, user_ids, timeout=self._read_timeout
            )
        first = rows[0]
        return SoldOutRead([row["holds"] for row in rows], first["coupon_id"], first["remaining"])

    async def claim_one(self, *, coupon_name: str, user_id: str) -> ClaimOutcome:
        """The original's flow: one transaction (one autocommit statement) per
        claim. It runs in the request's task, which the request deadline
        cancels: hence through Connections.write, which shields it."""

        async def claim_one(connection: Connection) -> ClaimOutcome:
            try:
                coupon_id = await connection.fetchval(query("claim_one"), coupon_name, user_id)
            except asyncpg.UniqueViolationError:
                return ClaimOutcome.ALREADY_CLAIMED
            except asyncpg.CheckViolationError as error:
                if error.constraint_name != "coupons_remaining_not_negative":
                    raise
                return ClaimOutcome.SOLD_OUT
            return ClaimOutcome.NOT_FOUND if coupon_id is None else ClaimOutcome.CLAIMED

        return await self._write(claim_one)


def _first_arrival_outcomes(
    users: list[str], claimed: list[str], holders: list[str] | None
) -> dict[str, ClaimOutcome]:
    """Each distinct user's outcome from claim_many's answer. ``holders`` is
    None when every user fitted in the stock: then whoever was not granted a
    claim was refused by the primary key, i.e. already holds the coupon."""
    granted = set(claimed)
    held = set(users) - granted if holders is None else set(holders)
    return {
        user: ClaimOutcome.CLAIMED
        if user in granted
        else ClaimOutcome.ALREADY_CLAIMED
        if user in held
        else ClaimOutcome.SOLD_OUT
        for user in users
    }


def _with_repeats(user_ids: Sequence[str], decided: dict[str, ClaimOutcome]) -> list[ClaimOutcome]:
    """Outcomes in arrival order; a user's later arrivals in the same batch
    hear already_claimed if the first one holds the coupon now."""
    seen: set[str] = set()
    outcomes = []
    for user in user_ids:
        outcome = decided[user]
        if user in seen and outcome is ClaimOutcome.CLAIMED:
            outcome = ClaimOutcome.ALREADY_CLAIMED
        seen.add(user)
        outcomes.append(outcome)
    return outcomes
