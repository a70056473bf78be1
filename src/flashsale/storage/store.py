"""The write side's storage: coupons created and changed, claims decided,
released, redeemed and expired (the claim engine's ClaimStore, the service's
CouponWriter and HoldSweeper). Each method runs the query of queries.sql
that bears its name and returns plain Python values.

Writes go through Connections.write (never cancelled once sent: a commit may
be waiting for its synchronous standby); reads carry a client-side timeout,
which may cancel them: a read commits nothing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

import asyncpg

from flashsale.claims.ports import BatchResult, Key, SoldOutRead
from flashsale.domain import (
    REFUSED,
    AlreadyRedeemed,
    AmountBelowClaimed,
    ClaimDecision,
    ClaimNotFound,
    ClaimOutcome,
    CouponExists,
    CouponNotFound,
    DomainError,
    InvalidCoupon,
    ReleaseDecision,
    ReleaseOutcome,
    ServiceUnavailable,
)
from flashsale.service.ports import KEEP, Answer, ClaimView, CouponChange, CouponState, Once
from flashsale.storage.connections import Connections
from flashsale.storage.idempotency import in_transaction, run_once
from flashsale.storage.pool import Connection
from flashsale.storage.queries import query
from flashsale.storage.rows import claim_view, coupon_state

_REUSED = ClaimOutcome.KEY_REUSED
# claim_many_keyed's error when a request for another coupon took one of the
# batch's keys meanwhile: the batch rolled back whole, and runs again (the key
# is then found stored: that arrival hears idempotency_key_reused).
KEY_RACE = "FSK01"
KEY_RACE_ATTEMPTS = 3
# claim_many_new_keys fails on this index when a key of the batch was stored.
_KEYS_PKEY = "idempotency_keys_pkey"
# Coupons whose last keyed batch met a stored key, kept by a process at most.
MAX_REPLAYING_HINTS = 1000
_KEYS_BUSY = "this batch's idempotency keys are being used by other requests, retry shortly"
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
        # Coupons whose keyed batches go to claim_many_keyed first (_keyed_batch).
        self._replaying: set[str] = set()
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
        return await self._write(partial(_create_coupon, arguments))

    async def change_coupon(self, name: str, change: CouponChange) -> CouponState:
        return await self._write(in_transaction(partial(_change_coupon, name, change)))

    async def redeem_claim(self, *, coupon_name: str, user_id: str) -> ClaimView:
        return await self._write(in_transaction(partial(_redeem_claim, coupon_name, user_id)))

    async def create_coupon_once(
        self,
        once: Once[CouponState],
        *,
        name: str,
        amount: int,
        starts_at: datetime | None = None,
        ends_at: datetime | None = None,
        hold_seconds: int | None = None,
    ) -> Answer:
        arguments = (name, amount, starts_at, ends_at, hold_seconds)
        return await self._write(partial(run_once, once, partial(_create_coupon, arguments)))

    async def change_coupon_once(
        self, once: Once[CouponState], name: str, change: CouponChange
    ) -> Answer:
        return await self._write(partial(run_once, once, partial(_change_coupon, name, change)))

    async def redeem_claim_once(
        self, once: Once[ClaimView], *, coupon_name: str, user_id: str
    ) -> Answer:
        effect = partial(_redeem_claim, coupon_name, user_id)
        return await self._write(partial(run_once, once, effect))

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

    async def claim_many(
        self,
        coupon_name: str,
        user_ids: Sequence[str],
        releases: Sequence[str] = (),
        claim_keys: Sequence[Key] = (),
        release_keys: Sequence[Key] = (),
    ) -> BatchResult:
        firsts = list(dict.fromkeys(user_ids))  # each user once, at their first arrival
        released = list(releases)
        if any(claim_keys) or any(release_keys):
            return await self._claim_many_keyed(
                coupon_name, user_ids, firsts, released, claim_keys, release_keys
            )

        async def claim_many(connection: Connection) -> asyncpg.Record | None:
            return await connection.fetchrow(query("claim_many"), coupon_name, firsts, released)

        row = await self._write(claim_many)
        assert row is not None
        result = _batch_result(row, firsts, user_ids)
        result.releases.extend(_release_outcomes(row, released))
        return result

    async def _claim_many_keyed(
        self,
        coupon_name: str,
        user_ids: Sequence[str],
        firsts: list[str],
        released: list[str],
        claim_keys: Sequence[Key],
        release_keys: Sequence[Key],
    ) -> BatchResult:
        """claim_many_new_keys, or claim_many_keyed when it cannot be (see
        _keyed_batch): a keyed user arrives once, so its first arrival is its
        only one and the key goes with it."""
        by_user = {user: key for user, key in zip(user_ids, claim_keys, strict=False) if key}
        claims = _key_arguments([by_user.get(user) for user in firsts])
        releases = _key_arguments(list(release_keys) or [None] * len(released))
        batch = _KeyedBatch(coupon_name, firsts, released, claims, releases)
        row, new = await self._write(partial(self._keyed_batch, batch))
        result = _batch_result(row, firsts, user_ids)
        result.releases.extend(_release_outcomes(row, released))
        keyed = _new_key_claims(row) if new else _keyed_claims(row)
        decided = dict(zip(firsts, keyed, strict=False))
        result.keyed_claims.extend(
            decided.get(user) if key else None
            for user, key in zip(user_ids, claim_keys or [None] * len(user_ids), strict=True)
        )
        if not new:  # claim_many_new_keys carries no release key
            result.keyed_releases.extend(_keyed_releases(row, len(released)))
        return result

    async def _keyed_batch(
        self, batch: _KeyedBatch, connection: Connection
    ) -> tuple[asyncpg.Record, bool]:
        """The row, and whether every key was new (claim_many_new_keys). That
        batch is tried first unless it carries release keys or its coupon's
        last keyed batch met a stored key (a hint: retries come in bursts)."""
        if batch.releases[0] is None and batch.coupon_name not in self._replaying:
            try:
                row = await connection.fetchrow(query("claim_many_new_keys"), *batch.new_keys())
            except asyncpg.UniqueViolationError as error:
                if error.constraint_name != _KEYS_PKEY:
                    raise
                self._note_replaying(batch.coupon_name)  # rolled back whole; probe instead
            else:
                assert row is not None
                return row, True
        row = await _probing_batch(connection, batch)
        if not _met_stored_keys(row):
            self._replaying.discard(batch.coupon_name)
        return row, False

    def _note_replaying(self, coupon_name: str) -> None:
        if len(self._replaying) >= MAX_REPLAYING_HINTS:
            self._replaying.clear()  # hints only: forgetting costs one failed batch each
        self._replaying.add(coupon_name)

    async def sold_out_batch(self, coupon_name: str, user_ids: Sequence[str]) -> SoldOutRead:
        async with self._connection() as connection:
            rows = await connection.fetch(
                query("sold_out_batch"), coupon_name, user_ids, timeout=self._read_timeout
            )
        first = rows[0]
        refusal = ClaimOutcome(first["refusal"]) if first["refusal"] else None
        holds = [row["holds"] for row in rows]
        return SoldOutRead(holds, first["coupon_id"], first["remaining"], refusal)

    async def claim_one(self, *, coupon_name: str, user_id: str, key: Key = None) -> ClaimDecision:
        """The original's flow: one transaction (one autocommit statement) per
        claim. It runs in the request's task, which the request deadline
        cancels: hence through Connections.write, which shields it."""
        if key is not None:
            keyed = await self.claim_many(coupon_name, [user_id], claim_keys=[key])
            decision = keyed.keyed_claims[0]
            assert decision is not None
            return decision

        async def claim_one(connection: Connection) -> asyncpg.Record | None:
            return await connection.fetchrow(query("claim_one"), coupon_name, user_id)

        row = await self._write(claim_one)
        assert row is not None
        result = _batch_result(row, [user_id], [user_id])
        return ClaimDecision(result.outcomes[0], result.claimed_at, result.expires_at)


# The writes' effects, each on a connection the caller chose: in a
# transaction of its own (the plain writes) or in the one that also stores
# the request's idempotency key (storage/idempotency.py).


async def _create_coupon(arguments: tuple[Any, ...], connection: Connection) -> CouponState:
    name = arguments[0]
    try:
        row = await connection.fetchrow(query("create_coupon"), *arguments)
    except asyncpg.UniqueViolationError:
        raise CouponExists(f"coupon {name!r} already exists") from None
    except asyncpg.CheckViolationError as error:
        raise _window_error(error) from None
    if row is None:
        raise _ends_in_past()
    return coupon_state(row)


async def _change_coupon(name: str, change: CouponChange, connection: Connection) -> CouponState:
    """Runs in a transaction: the coupon is read after the change, under its lock."""
    try:
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


def _key_arguments(keys: Sequence[Key]) -> tuple[str | None, list[str | None], list[bytes | None]]:
    """A kind's scope (its keys share their route's), keys and fingerprints."""
    scope = next((key.scope for key in keys if key), None)
    return (
        scope,
        [key.key if key else None for key in keys],
        [key.fingerprint if key else None for key in keys],
    )


@dataclass(frozen=True, slots=True)
class _KeyedBatch:
    """One keyed call's arguments: each kind's (scope, keys, fingerprints)."""

    coupon_name: str
    firsts: list[str]
    released: list[str]
    claims: tuple[str | None, list[str | None], list[bytes | None]]
    releases: tuple[str | None, list[str | None], list[bytes | None]]

    def new_keys(self) -> tuple[Any, ...]:
        return (self.coupon_name, self.firsts, self.released, *self.claims)

    def probed(self) -> tuple[Any, ...]:
        return (*self.new_keys(), *self.releases)


async def _probing_batch(connection: Connection, batch: _KeyedBatch) -> asyncpg.Record:
    """claim_many_keyed, sent again when another coupon's request took one of
    its keys meanwhile (KEY_RACE)."""
    for _ in range(KEY_RACE_ATTEMPTS):
        try:
            row = await connection.fetchrow(query("claim_many_keyed"), *batch.probed())
        except asyncpg.PostgresError as error:
            if error.sqlstate != KEY_RACE:
                raise
        else:
            assert row is not None
            return row
    raise ServiceUnavailable(_KEYS_BUSY)


def _met_stored_keys(row: asyncpg.Record) -> bool:
    """Whether a probed batch found a claim key stored (a replay or a reuse)."""
    return any(row["claim_replayed"] or ()) or _REUSED.value in (row["claim_outcomes"] or ())


def _new_key_claims(row: asyncpg.Record) -> list[ClaimDecision | None]:
    """The decisions claim_many_new_keys stored with new keys: none a replay,
    a granted one with the batch's times."""
    granted = ClaimDecision(ClaimOutcome.CLAIMED, row["claimed_at"], row["expires_at"])
    decisions = {outcome.value: REFUSED[outcome] for outcome in ClaimOutcome}
    decisions[ClaimOutcome.CLAIMED.value] = granted
    return [None if o is None else decisions[o] for o in row["claim_outcomes"] or ()]


def _keyed_claims(row: asyncpg.Record) -> list[ClaimDecision | None]:
    """The decisions claim_many stored (or found) under each first arrival's key."""
    outcomes = row["claim_outcomes"] or []
    replayed, claimed, expires = (
        row["claim_replayed"],
        row["claim_claimed_ats"],
        row["claim_expires_ats"],
    )
    return [
        None if outcome is None else _keyed_claim(outcome, claimed[i], expires[i], replayed[i])
        for i, outcome in enumerate(outcomes)
    ]


def _keyed_claim(
    outcome: str, claimed_at: datetime | None, expires_at: datetime | None, replayed: bool
) -> ClaimDecision:
    decided = ClaimOutcome(outcome)  # a reused key's refusal replays nothing
    return ClaimDecision(decided, claimed_at, expires_at, replayed and decided is not _REUSED)


def _keyed_releases(row: asyncpg.Record, count: int) -> list[ReleaseDecision | None]:
    outcomes = row["release_outcomes"] or [None] * count
    replayed = row["release_replayed"] or [False] * count
    decisions: list[ReleaseDecision | None] = []
    for i, outcome in enumerate(outcomes):
        decided = None if outcome is None else ReleaseOutcome(outcome)
        again = replayed[i] and decided is not ReleaseOutcome.KEY_REUSED
        decisions.append(None if decided is None else ReleaseDecision(decided, again))
    return decisions


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
