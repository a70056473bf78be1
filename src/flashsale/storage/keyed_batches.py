"""Batches with Idempotency-Keys in them: the claim lane's keyed calls of
CouponStore.decide_batch. Their decisions are stored with their keys by
the batch's own transaction (SQL claim_many_new_keys or claim_many_keyed:
schema.sql), where no Python runs.

A batch whose claim keys are all new (the common case) goes to
claim_many_new_keys, which inserts the keys as it decides and fails whole
on the keys' primary key when one was stored; then, and for batches with
release keys, claim_many_keyed probes each key first and replays stored
decisions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

import asyncpg

from flashsale.claims.ports import BatchResult, Key
from flashsale.domain import (
    REFUSED,
    TIMED,
    ClaimDecision,
    ClaimOutcome,
    ReleaseDecision,
    ReleaseOutcome,
    ServiceUnavailable,
)
from flashsale.storage.batches import batch_result, release_outcomes
from flashsale.storage.connections import Connections
from flashsale.storage.pool import Connection
from flashsale.storage.queries import query

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
KeyArguments = tuple[str | None, list[str | None], list[bytes | None]]


@dataclass(frozen=True, slots=True)
class KeyedBatch:
    """One keyed call's arguments: each kind's (scope, keys, fingerprints)."""

    coupon_name: str
    firsts: list[str]
    released: list[str]
    claims: KeyArguments
    releases: KeyArguments
    actors: str | None  # who released which user (rows.py release_actors_json)

    def new_keys(self) -> tuple[Any, ...]:
        return (self.coupon_name, self.firsts, self.released, *self.claims, self.actors)

    def probed(self) -> tuple[Any, ...]:
        return (
            self.coupon_name,
            self.firsts,
            self.released,
            *self.claims,
            *self.releases,
            self.actors,
        )


class KeyedBatches:
    def __init__(self, connections: Connections) -> None:
        self._write = connections.write
        # Coupons whose keyed batches are probed first (see _send).
        self._replaying: set[str] = set()

    async def decide(
        self,
        coupon_name: str,
        user_ids: Sequence[str],
        releases: list[str],
        claim_keys: Sequence[Key],
        release_keys: Sequence[Key],
        actors: str | None = None,
    ) -> BatchResult:
        """As CouponStore.decide_batch: a keyed user arrives once, so its
        first arrival is its only one and the key goes with it."""
        firsts = list(dict.fromkeys(user_ids))
        by_user = {user: key for user, key in zip(user_ids, claim_keys, strict=False) if key}
        claims = key_arguments([by_user.get(user) for user in firsts])
        released = key_arguments(list(release_keys) or [None] * len(releases))
        batch = KeyedBatch(coupon_name, firsts, releases, claims, released, actors)
        row, new = await self._write(partial(self._send, batch))
        result = batch_result(row, firsts, user_ids)
        result.releases.extend(release_outcomes(row, releases))
        keyed = _new_key_claims(row) if new else keyed_claims(row)
        decided = dict(zip(firsts, keyed, strict=False))
        result.keyed_claims.extend(
            decided.get(user) if key else None
            for user, key in zip(user_ids, claim_keys or [None] * len(user_ids), strict=True)
        )
        if not new:  # claim_many_new_keys carries no release key
            result.keyed_releases.extend(keyed_releases(row, len(releases)))
        return result

    async def _send(self, batch: KeyedBatch, connection: Connection) -> tuple[asyncpg.Record, bool]:
        """The row, and whether every key was new (claim_many_new_keys). That
        batch is tried first unless it carries release keys or its coupon's
        last keyed batch met a stored key (a hint: retries come in bursts)."""
        if batch.releases[0] is None and batch.coupon_name not in self._replaying:
            try:
                row = await connection.fetchrow(query("decide_batch_new_keys"), *batch.new_keys())
            except asyncpg.UniqueViolationError as error:
                if error.constraint_name != _KEYS_PKEY:
                    raise
                self._note_replaying(batch.coupon_name)  # rolled back whole; probe instead
            else:
                assert row is not None
                return row, True
        row = await _probe(connection, batch)
        if not _met_stored_keys(row):
            self._replaying.discard(batch.coupon_name)
        return row, False

    def _note_replaying(self, coupon_name: str) -> None:
        if len(self._replaying) >= MAX_REPLAYING_HINTS:
            self._replaying.clear()  # hints only: forgetting costs one failed batch each
        self._replaying.add(coupon_name)


def key_arguments(keys: Sequence[Key]) -> KeyArguments:
    """A kind's scope (its keys share their route's), keys and fingerprints."""
    scope = next((key.scope for key in keys if key), None)
    return (
        scope,
        [key.key if key else None for key in keys],
        [key.fingerprint if key else None for key in keys],
    )


async def _probe(connection: Connection, batch: KeyedBatch) -> asyncpg.Record:
    """claim_many_keyed, sent again when another coupon's request took one of
    its keys meanwhile (KEY_RACE)."""
    for _ in range(KEY_RACE_ATTEMPTS):
        try:
            row = await connection.fetchrow(query("decide_keyed_batch"), *batch.probed())
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
    decisions = {outcome.value: REFUSED[outcome] for outcome in ClaimOutcome}
    for timed in TIMED:  # a grant or an entry, with the batch's times
        decisions[timed.value] = ClaimDecision(timed, row["claimed_at"], row["expires_at"])
    return [None if o is None else decisions[o] for o in row["claim_outcomes"] or ()]


def keyed_claims(row: asyncpg.Record) -> list[ClaimDecision | None]:
    """The decisions claim_many_keyed stored (or found) under each first arrival's key."""
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


def keyed_releases(row: asyncpg.Record, count: int) -> list[ReleaseDecision | None]:
    outcomes = row["release_outcomes"] or [None] * count
    replayed = row["release_replayed"] or [False] * count
    decisions: list[ReleaseDecision | None] = []
    for i, outcome in enumerate(outcomes):
        decided = None if outcome is None else ReleaseOutcome(outcome)
        again = replayed[i] and decided is not ReleaseOutcome.KEY_REUSED
        decisions.append(None if decided is None else ReleaseDecision(decided, again))
    return decisions
