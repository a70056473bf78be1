"""The write side's storage: coupons created, claims decided (the claim
engine's ClaimStore and the service's CouponWriter). Each method runs the
query of queries.sql that bears its name and returns plain Python values."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from flashsale.claims.ports import BatchResult, SoldOutRead
from flashsale.domain import ClaimOutcome, CouponExists
from flashsale.storage.connections import Connections
from flashsale.storage.queries import query


class CouponStore:
    def __init__(self, connections: Connections) -> None:
        self._connection = connections.connection

    async def ping(self) -> None:
        async with self._connection() as connection:
            await connection.fetchval(query("ping"))

    async def create_coupon(self, *, name: str, amount: int) -> None:
        async with self._connection() as connection:
            try:
                await connection.execute(query("create_coupon"), name, amount)
            except asyncpg.UniqueViolationError:
                raise CouponExists(f"coupon {name!r} already exists") from None

    async def claim_many(self, coupon_name: str, user_ids: Sequence[str]) -> BatchResult:
        firsts = list(dict.fromkeys(user_ids))  # each user once, at their first arrival
        async with self._connection() as connection:
            row = await connection.fetchrow(query("claim_many"), coupon_name, firsts)
        assert row is not None
        if row["coupon_id"] is None:
            return BatchResult([ClaimOutcome.NOT_FOUND] * len(user_ids), None, None)
        decided = _first_arrival_outcomes(firsts, row["claimed"], row["holders"])
        return BatchResult(_with_repeats(user_ids, decided), row["coupon_id"], row["remaining"])

    async def sold_out_batch(self, coupon_name: str, user_ids: Sequence[str]) -> SoldOutRead:
        async with self._connection() as connection:
            rows = await connection.fetch(query("sold_out_batch"), coupon_name, user_ids)
        first = rows[0]
        return SoldOutRead([row["holds"] for row in rows], first["coupon_id"], first["remaining"])

    async def claim_one(self, *, coupon_name: str, user_id: str) -> ClaimOutcome:
        """The original's flow: one transaction (one autocommit statement) per claim."""
        async with self._connection() as connection:
            try:
                coupon_id = await connection.fetchval(query("claim_one"), coupon_name, user_id)
            except asyncpg.UniqueViolationError:
                return ClaimOutcome.ALREADY_CLAIMED
            except asyncpg.CheckViolationError as error:
                if error.constraint_name != "coupons_remaining_not_negative":
                    raise
                return ClaimOutcome.SOLD_OUT
        return ClaimOutcome.NOT_FOUND if coupon_id is None else ClaimOutcome.CLAIMED


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
