"""The write side's storage: coupons created and changed, claims decided,
released, redeemed and expired (the claim engine's ClaimStore, the service's
CouponWriter and HoldSweeper). Each method runs the query of queries.sql
that bears its name and returns plain Python values.

Writes go through Connections.write (never cancelled once sent: a commit may
be waiting for its synchronous standby); reads carry a client-side timeout,
which may cancel them: a read commits nothing."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from flashsale.claims.ports import BatchResult, SoldOutRead
from flashsale.domain import (
    AlreadyRedeemed,
    AmountBelowClaimed,
    ClaimDecision,
    ClaimNotFound,
    ClaimOutcome,
    CouponExists,
    CouponNotFound,
    DomainError,
    InvalidCoupon,
    ReleaseOutcome,
    ServiceUnavailable,
)
from flashsale.service.ports import KEEP, ClaimView, CouponChange, CouponState
from flashsale.storage.connections import Connections
from flashsale.storage.pool import Connection
from flashsale.storage.queries import query
from flashsale.storage.rows import claim_view, coupon_state

# Coupons whose due holds one sweep takes at most (each under its own row lock).
SWEEP_COUPONS = 100
_WINDOW_ORDER = "coupons_window_order"
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

    async def create_coupon(
        self,
        *,
        name: str,
        amount: int,
        starts_at: datetime | None = None,
        ends_at: datetime | None = None,
        hold_seconds: int | None = None,
    ) -> CouponState:
        arguments = (name, amount, starts_at, ends_at, hold_seconds)

        async def create_coupon(connection: Connection) -> asyncpg.Record | None:
            try:
                return await connection.fetchrow(query("create_coupon"), *arguments)
            except asyncpg.UniqueViolationError:
                raise CouponExists(f"coupon {name!r} already exists") from None
            except asyncpg.CheckViolationError as error:
                raise _window_error(error) from None

        row = await self._write(create_coupon)
        if row is None:
            raise _ends_in_past()
        return coupon_state(row)

    async def change_coupon(self, name: str, change: CouponChange) -> CouponState:
        async def change_coupon(connection: Connection) -> asyncpg.Record | None:
            async with connection.transaction():
                try:
                    verdict = await connection.fetchval(
                        query("change_coupon"), name, *_change(change)
                    )
                except asyncpg.CheckViolationError as error:
                    raise _window_error(error) from None
                _raise_for(verdict, name, "")
                return await connection.fetchrow(query("coupon_state"), name)

        row = await self._write(change_coupon)
        assert row is not None  # locked and changed in this transaction
        return coupon_state(row)

    async def redeem_claim(self, *, coupon_name: str, user_id: str) -> ClaimView:
        async def redeem_claim(connection: Connection) -> asyncpg.Record | None:
            async with connection.transaction():
                verdict = await connection.fetchval(query("redeem_claim"), coupon_name, user_id)
                _raise_for(verdict, coupon_name, user_id)
                return await connection.fetchrow(query("find_claim"), coupon_name, user_id)

        row = await self._write(redeem_claim)
        assert row is not None  # redeemed in this transaction: it exists, never expires
        assert row["user_id"] is not None
        return claim_view(row)

    async def expire_holds(self) -> int:
        async def expire_holds(connection: Connection) -> int:
            expired: int = await connection.fetchval(query("expire_holds"), SWEEP_COUPONS)
            return expired

        return await self._write(expire_holds)

    async def claim_many(
        self, coupon_name: str, user_ids: Sequence[str], releases: Sequence[str] = ()
    ) -> BatchResult:
        firsts = list(dict.fromkeys(user_ids))  # each user once, at their first arrival
        released = list(releases)

        async def claim_many(connection: Connection) -> asyncpg.Record | None:
            return await connection.fetchrow(query("claim_many"), coupon_name, firsts, released)

        row = await self._write(claim_many)
        assert row is not None
        result = _batch_result(row, firsts, user_ids)
        result.releases.extend(_release_outcomes(row, released))
        return result

    async def sold_out_batch(self, coupon_name: str, user_ids: Sequence[str]) -> SoldOutRead:
        async with self._connection() as connection:
            rows = await connection.fetch(
                query("sold_out_batch"), coupon_name, user_ids, timeout=self._read_timeout
            )
        first = rows[0]
        refusal = ClaimOutcome(first["refusal"]) if first["refusal"] else None
        holds = [row["holds"] for row in rows]
        return SoldOutRead(holds, first["coupon_id"], first["remaining"], refusal)

    async def claim_one(self, *, coupon_name: str, user_id: str) -> ClaimDecision:
        """The original's flow: one transaction (one autocommit statement) per
        claim. It runs in the request's task, which the request deadline
        cancels: hence through Connections.write, which shields it."""

        async def claim_one(connection: Connection) -> asyncpg.Record | None:
            return await connection.fetchrow(query("claim_one"), coupon_name, user_id)

        row = await self._write(claim_one)
        assert row is not None
        result = _batch_result(row, [user_id], [user_id])
        return ClaimDecision(result.outcomes[0], result.claimed_at, result.expires_at)


def _batch_result(row: asyncpg.Record, firsts: list[str], user_ids: Sequence[str]) -> BatchResult:
    if row["coupon_id"] is None:
        return BatchResult([ClaimOutcome.NOT_FOUND] * len(user_ids), None, None)
    refusal = ClaimOutcome(row["refusal"]) if row["refusal"] else ClaimOutcome.SOLD_OUT
    decided = _first_arrival_outcomes(firsts, row["claimed"], row["holders"], refusal)
    return BatchResult(
        _with_repeats(user_ids, decided),
        row["coupon_id"],
        row["remaining"],
        row["claimed_at"],
        row["expires_at"],
    )


def _release_outcomes(row: asyncpg.Record, releases: list[str]) -> list[ReleaseOutcome]:
    """Each release's outcome in order; a user released twice in one batch
    gets its unit back once: the repeats held nothing any more."""
    if row["coupon_id"] is None:
        return [ReleaseOutcome.NOT_FOUND] * len(releases)
    back, redeemed = set(row["released"]), set(row["redeemed"])
    outcomes = []
    for user in releases:
        if user in back:
            outcomes.append(ReleaseOutcome.RELEASED)
            back.discard(user)
        elif user in redeemed:
            outcomes.append(ReleaseOutcome.ALREADY_REDEEMED)
        else:
            outcomes.append(ReleaseOutcome.CLAIM_NOT_FOUND)
    return outcomes


def _change(change: CouponChange) -> tuple[Any, ...]:
    """change_coupon's arguments: each optional field as (set?, value)."""
    starts, ends, hold = change.starts_at, change.ends_at, change.hold_seconds
    return (
        change.amount,
        starts is not KEEP,
        None if starts is KEEP else starts,
        ends is not KEEP,
        None if ends is KEEP else ends,
        change.active,
        hold is not KEEP,
        None if hold is KEEP else hold,
    )


def _raise_for(verdict: str, coupon_name: str, user_id: str) -> None:
    """The domain error a function's verdict stands for ('ok': none)."""
    errors: dict[str, DomainError] = {
        "coupon_not_found": CouponNotFound(f"coupon {coupon_name!r} does not exist"),
        "claim_not_found": ClaimNotFound(
            f"user {user_id!r} holds no live claim on coupon {coupon_name!r}"
        ),
        "already_redeemed": AlreadyRedeemed(
            f"user {user_id!r} has already redeemed coupon {coupon_name!r}"
        ),
        "amount_below_claimed": AmountBelowClaimed(
            f"amount would be below the live claims of coupon {coupon_name!r}"
        ),
        "ends_in_past": _ends_in_past(),
    }
    if verdict != "ok":
        raise errors[verdict]


def _ends_in_past() -> InvalidCoupon:
    return InvalidCoupon("ends_at must be in the future")


def _window_error(error: asyncpg.CheckViolationError) -> InvalidCoupon:
    if error.constraint_name != _WINDOW_ORDER:
        raise error
    return InvalidCoupon("ends_at must be later than starts_at")


def _first_arrival_outcomes(
    users: list[str], claimed: list[str], holders: list[str] | None, refusal: ClaimOutcome
) -> dict[str, ClaimOutcome]:
    """Each distinct user's outcome from claim_many's answer. ``holders`` is
    None when every user fitted in the stock: then whoever was not granted a
    claim was refused by the primary key, i.e. already holds the coupon.
    Everyone else hears ``refusal``: why the sale is closed, or sold_out."""
    granted = set(claimed)
    held = set(users) - granted if holders is None else set(holders)
    return {
        user: ClaimOutcome.CLAIMED
        if user in granted
        else ClaimOutcome.ALREADY_CLAIMED
        if user in held
        else refusal
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
