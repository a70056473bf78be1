"""The write side's storage: coupons created and changed, claims decided,
released, redeemed and expired (the claim engine's ClaimStore, the service's
CouponWriter and HoldSweeper). Each method runs the query of queries.sql
that bears its name and returns plain Python values; batches with
Idempotency-Keys go through storage/keyed_batches.py, a lane's batch across
coupons through storage/lane_batches.py.

Writes go through Connections.write (never cancelled once sent: a commit may
be waiting for its synchronous standby); reads carry a client-side timeout,
which may cancel them: a read commits nothing."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any, TypeVar, overload

import asyncpg

from flashsale.claims.ports import BatchResult, CouponPart, Key, PartResult, SoldOutRead
from flashsale.domain import (
    AlreadyRedeemed,
    AmountBelowClaimed,
    Caller,
    ClaimDecision,
    ClaimNotFound,
    CouponExists,
    CouponNotFound,
    DomainError,
    InvalidCoupon,
    InvalidDrawAt,
    RaffleDrawing,
    RaffleEntriesExist,
    ServiceUnavailable,
)
from flashsale.service.ports import (
    KEEP,
    Answer,
    ClaimView,
    CouponChange,
    CouponState,
    NewCoupon,
    Once,
)
from flashsale.storage.batches import batch_result, release_outcomes, sold_out_read
from flashsale.storage.connections import Connections
from flashsale.storage.idempotency import Effect, in_transaction, run_once
from flashsale.storage.keyed_batches import KeyedBatches
from flashsale.storage.lane_batches import LaneBatches
from flashsale.storage.pool import Connection
from flashsale.storage.queries import query
from flashsale.storage.rows import actor_json, claim_view, coupon_state, release_actors_json

R = TypeVar("R")
# Coupons whose due holds one sweep takes at most (each under its own row lock).
SWEEP_COUPONS = 100
_WINDOW_ORDER = "coupons_window_order"
_DRAW_CHECKS = {
    "coupons_draw_in_window": "draw_at must be after starts_at and before ends_at",
    "coupons_raffle_draw_at": "a raffle needs draw_at, and only a raffle has one",
}
# What a health check reports when the database answers but cannot take writes.
_READ_ONLY = "no writable primary (the database is a read-only replica), retry shortly"
_NO_STANDBY = "commits are waiting for a synchronous standby, retry shortly"


class CouponStore:
    def __init__(self, connections: Connections) -> None:
        self._connections = connections
        self._connection = connections.connection
        self._write = connections.write
        self._keyed = KeyedBatches(connections)
        self._lanes = LaneBatches(connections, self._decide_alone)
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

    @overload
    async def create_coupon(
        self, coupon: NewCoupon, once: None = None, *, actor: Caller | None = None
    ) -> CouponState: ...
    @overload
    async def create_coupon(
        self, coupon: NewCoupon, once: Once[CouponState], *, actor: Caller | None = None
    ) -> Answer: ...
    async def create_coupon(
        self,
        coupon: NewCoupon,
        once: Once[CouponState] | None = None,
        *,
        actor: Caller | None = None,
    ) -> CouponState | Answer:
        # One statement: autocommit is its transaction (no BEGIN round trip),
        # unless an actor is recorded first.
        effect = partial(_create_coupon, coupon)
        return await self._run(effect, once, actor, transaction=actor is not None)

    @overload
    async def change_coupon(
        self, name: str, change: CouponChange, once: None = None, *, actor: Caller | None = None
    ) -> CouponState: ...
    @overload
    async def change_coupon(
        self,
        name: str,
        change: CouponChange,
        once: Once[CouponState],
        *,
        actor: Caller | None = None,
    ) -> Answer: ...
    async def change_coupon(
        self,
        name: str,
        change: CouponChange,
        once: Once[CouponState] | None = None,
        *,
        actor: Caller | None = None,
    ) -> CouponState | Answer:
        return await self._run(partial(_change_coupon, name, change), once, actor)

    @overload
    async def redeem_claim(
        self, *, coupon_name: str, user_id: str, once: None = None, actor: Caller | None = None
    ) -> ClaimView: ...
    @overload
    async def redeem_claim(
        self,
        *,
        coupon_name: str,
        user_id: str,
        once: Once[ClaimView],
        actor: Caller | None = None,
    ) -> Answer: ...
    async def redeem_claim(
        self,
        *,
        coupon_name: str,
        user_id: str,
        once: Once[ClaimView] | None = None,
        actor: Caller | None = None,
    ) -> ClaimView | Answer:
        return await self._run(partial(_redeem_claim, coupon_name, user_id), once, actor)

    async def _run(
        self,
        effect: Effect[R],
        once: Once[R] | None,
        actor: Caller | None,
        *,
        transaction: bool = True,
    ) -> R | Answer:
        """The effect in a transaction of its own, or in the one that also
        stores the request's idempotency key (storage/idempotency.py); the
        actor, if any, named first in the same transaction (acting)."""
        if actor is not None:
            effect = partial(_acting, actor, effect)
        if once is not None:
            return await self._write(partial(run_once, once, effect))
        return await self._write(in_transaction(effect) if transaction else effect)

    async def purge_idempotency_keys(self, *, older_than: int, limit: int) -> int:
        async def purge(connection: Connection) -> int:
            purged: int = await connection.fetchval(
                query("purge_idempotency_keys"), older_than, limit
            )
            return purged

        return await self._write(purge)

    async def expire_holds(self) -> int:
        async def expire_holds(connection: Connection) -> int:
            expired: int = await connection.fetchval(query("expire_holds"), SWEEP_COUPONS)
            return expired

        return await self._write(expire_holds)

    async def start_draws(self, limit: int) -> list[int]:
        """The raffles whose draw is to be stepped, frozen now if due."""

        async def start_draws(connection: Connection) -> list[asyncpg.Record]:
            return await connection.fetch(query("start_draws"), limit)

        return [row["coupon_id"] for row in await self._write(start_draws)]

    async def draw_step(self, coupon_id: int, chunk: int) -> bool | None:
        """The next ``chunk`` places of a draw, one transaction; True when
        done, None when another session is stepping it."""

        async def draw_step(connection: Connection) -> bool | None:
            done: bool | None = await connection.fetchval(query("draw_step"), coupon_id, chunk)
            return done

        return await self._write(draw_step)

    async def decide_batch(
        self,
        coupon_name: str,
        user_ids: Sequence[str],
        releases: Sequence[str] = (),
        claim_keys: Sequence[Key] = (),
        release_keys: Sequence[Key] = (),
        *,
        release_actors: Sequence[Caller | None] = (),
    ) -> BatchResult:
        released = list(releases)
        actors = release_actors_json(released, release_actors)
        if any(claim_keys) or any(release_keys):
            return await self._keyed.decide(
                coupon_name, user_ids, released, claim_keys, release_keys, actors
            )
        firsts = list(dict.fromkeys(user_ids))  # each user once, at their first arrival
        arguments = (coupon_name, firsts, released, actors)

        async def decide_batch(connection: Connection) -> asyncpg.Record | None:
            return await connection.fetchrow(query("decide_batch"), *arguments)

        row = await self._write(decide_batch)
        assert row is not None
        result = batch_result(row, firsts, user_ids)
        result.releases.extend(release_outcomes(row, released))
        return result

    async def decide_coupons(self, parts: Sequence[CouponPart]) -> list[PartResult]:
        return await self._lanes.decide_coupons(parts)

    async def _decide_alone(self, part: CouponPart) -> BatchResult:
        """A lane batch's part in a transaction of its own."""
        return await self.decide_batch(
            part.coupon_name,
            part.user_ids,
            part.releases,
            part.claim_keys,
            part.release_keys,
            release_actors=part.release_actors,
        )

    async def sold_out_batch(self, coupon_name: str, user_ids: Sequence[str]) -> SoldOutRead:
        async with self._connection() as connection:
            rows = await connection.fetch(
                query("sold_out_batch"), coupon_name, user_ids, timeout=self._read_timeout
            )
        return sold_out_read(rows)

    async def sold_out_coupons(self, parts: Sequence[CouponPart]) -> list[SoldOutRead]:
        return await self._lanes.sold_out_coupons(parts)

    async def claim_one(self, *, coupon_name: str, user_id: str, key: Key = None) -> ClaimDecision:
        """The original's flow: one transaction (one autocommit statement) per
        claim. It runs in the request's task, which the request deadline
        cancels: hence through Connections.write, which shields it."""
        if key is not None:
            keyed = await self.decide_batch(coupon_name, [user_id], claim_keys=[key])
            decision = keyed.keyed_claims[0]
            assert decision is not None
            return decision

        async def claim_one(connection: Connection) -> asyncpg.Record | None:
            return await connection.fetchrow(query("claim_one"), coupon_name, user_id)

        row = await self._write(claim_one)
        assert row is not None
        result = batch_result(row, [user_id], [user_id])
        return ClaimDecision(result.outcomes[0], result.claimed_at, result.expires_at)


# The writes' effects, each on a connection the caller chose: in a
# transaction of its own (the plain writes) or in the one that also stores
# the request's idempotency key (storage/idempotency.py).


async def _acting(actor: Caller, effect: Effect[R], connection: Connection) -> R:
    """``effect`` with its events naming ``actor`` (schema.sql
    event_actor_data reads the transaction-local setting act_as makes)."""
    await connection.execute(query("act_as"), actor_json(actor))
    return await effect(connection)


async def _create_coupon(coupon: NewCoupon, connection: Connection) -> CouponState:
    arguments = (
        *(coupon.name, coupon.amount, coupon.starts_at, coupon.ends_at, coupon.hold_seconds),
        *(coupon.allocation, coupon.draw_at, coupon.seed),
    )
    try:
        row = await connection.fetchrow(query("create_coupon"), *arguments)
    except asyncpg.UniqueViolationError:
        raise CouponExists(f"coupon {coupon.name!r} already exists") from None
    except asyncpg.CheckViolationError as error:
        raise _window_error(error) from None
    if row is None:
        raise _past_error(coupon)
    return coupon_state(row)


def _past_error(coupon: NewCoupon) -> DomainError:
    """Which time was not in the future: the earlier of draw_at and ends_at
    (the one before the other is in the past whenever the later one is)."""
    draw, ends = coupon.draw_at, coupon.ends_at
    if draw is not None and (ends is None or draw < ends):
        return InvalidDrawAt("draw_at must be in the future")
    return _ends_in_past()


async def _change_coupon(name: str, change: CouponChange, connection: Connection) -> CouponState:
    """Runs in a transaction: the coupon is read after the change, under its lock."""
    try:
        if change.allocation is not None or change.draw_at is not KEEP:
            raffle = await connection.fetchval(query("change_raffle"), name, *_raffle(change))
            _raise_for(raffle, name, "")
        verdict = await connection.fetchval(query("change_coupon"), name, *_change(change))
    except asyncpg.CheckViolationError as error:
        raise _window_error(error) from None
    _raise_for(verdict, name, "")
    row = await connection.fetchrow(query("coupon_state"), name)
    assert row is not None  # locked and changed in this transaction
    return coupon_state(row)


async def _redeem_claim(coupon_name: str, user_id: str, connection: Connection) -> ClaimView:
    """Runs in a transaction: the claim is read after the redeem."""
    verdict = await connection.fetchval(query("redeem_claim"), coupon_name, user_id)
    _raise_for(verdict, coupon_name, user_id)
    row = await connection.fetchrow(query("find_claim"), coupon_name, user_id)
    assert row is not None  # redeemed in this transaction: it exists, never expires
    assert row["user_id"] is not None
    return claim_view(row)


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


def _raffle(change: CouponChange) -> tuple[Any, ...]:
    """change_raffle's arguments after the name: allocation (None keeps it),
    whether to set draw_at and its value, a seed for a coupon that has none."""
    draw = change.draw_at
    return (change.allocation, draw is not KEEP, None if draw is KEEP else draw, change.seed)


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
        "draw_in_past": InvalidDrawAt("draw_at must be in the future"),
        "draw_without_raffle": InvalidDrawAt("draw_at is for a raffle (allocation: raffle)"),
        "raffle_drawing": RaffleDrawing(
            f"the draw of coupon {coupon_name!r} is under way: change the amount after it"
        ),
        "raffle_entries_exist": RaffleEntriesExist(
            f"coupon {coupon_name!r} has entries or claims: its allocation and draw_at are fixed"
        ),
    }
    if verdict != "ok":
        raise errors[verdict]


def _ends_in_past() -> InvalidCoupon:
    return InvalidCoupon("ends_at must be in the future")


def _window_error(error: asyncpg.CheckViolationError) -> DomainError:
    if error.constraint_name in _DRAW_CHECKS:
        return InvalidDrawAt(_DRAW_CHECKS[error.constraint_name])
    if error.constraint_name != _WINDOW_ORDER:
        raise error
    return InvalidCoupon("ends_at must be later than starts_at")
