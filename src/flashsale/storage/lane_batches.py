"""A lane's batch across coupons (claims/lanes.py): every part, keyed or
not, decided in one round trip and one transaction (SQL claim_many_coupons,
or claim_many_coupons_keyed when a part carries Idempotency-Keys), and the
sold-out lanes' lock-free reads of several coupons (sold_out_coupons)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

import asyncpg

from flashsale.claims.ports import BatchResult, CouponPart, Key, PartResult, SoldOutRead
from flashsale.storage.batches import (
    batch_result,
    coupons_arguments,
    release_outcomes,
    sold_out_read,
)
from flashsale.storage.connections import Connections
from flashsale.storage.keyed_batches import (
    KEY_RACE,
    KEY_RACE_ATTEMPTS,
    key_arguments,
    keyed_claims,
    keyed_releases,
)
from flashsale.storage.pool import Connection
from flashsale.storage.queries import query

# One part on its own, in a transaction of its own (CouponStore.decide_batch).
DecideAlone = Callable[[CouponPart], Awaitable[BatchResult]]


class LaneBatches:
    def __init__(self, connections: Connections, decide_alone: DecideAlone) -> None:
        self._write = connections.write
        self._connection = connections.connection
        self._read_timeout = connections.read_timeout
        self._decide_alone = decide_alone

    async def decide_coupons(self, parts: Sequence[CouponPart]) -> list[PartResult]:
        firsts = [list(dict.fromkeys(part.user_ids)) for part in parts]
        try:
            rows = await self._write(partial(_decide_coupons, parts, firsts))
        except asyncpg.PostgresError:
            # One part failed the statement (a constraint, a raise, a key
            # taken again and again): nothing of the batch committed. Each
            # part alone, so only its own fails. (Failures of the database as
            # a whole are ServiceUnavailable.)
            return await self._each_alone(parts)
        rows = sorted(rows, key=lambda row: row["part"])  # the fast parts came first
        return [
            _part_result(row, part, first)
            for row, part, first in zip(rows, parts, firsts, strict=True)
        ]

    async def _each_alone(self, parts: Sequence[CouponPart]) -> list[PartResult]:
        """Each part decided in a transaction of its own, one after another (one
        connection at a time, as the batch had), its error kept as its result."""
        results: list[PartResult] = []
        for part in parts:
            try:
                results.append(await self._decide_alone(part))
            except Exception as error:  # the part's own answer
                results.append(error)
        return results

    async def sold_out_coupons(self, parts: Sequence[CouponPart]) -> list[SoldOutRead]:
        names = [part.coupon_name for part in parts]
        counts = [len(part.user_ids) for part in parts]
        users = [user for part in parts for user in part.user_ids]
        async with self._connection() as connection:
            rows = await connection.fetch(
                query("sold_out_coupons_batch"), names, counts, users, timeout=self._read_timeout
            )
        by_part: list[list[asyncpg.Record]] = [[] for _ in parts]
        for row in rows:
            by_part[row["part"] - 1].append(row)
        return [sold_out_read(part_rows) for part_rows in by_part]


async def _decide_coupons(
    parts: Sequence[CouponPart], firsts: list[list[str]], connection: Connection
) -> list[asyncpg.Record]:
    """The batch's rows; with keys, sent again when a request for another
    coupon took one of them meanwhile (KEY_RACE: the batch rolled back whole,
    and the next attempt finds the key stored), as claim_many_keyed is."""
    arguments = coupons_arguments(parts, firsts)
    if not any(part.has_keys() for part in parts):
        return await connection.fetch(query("decide_coupons_batch"), *arguments)
    keyed = (*arguments, *_keys_arguments(parts, firsts))
    for attempt in range(1, KEY_RACE_ATTEMPTS + 1):
        try:
            return await connection.fetch(query("decide_coupons_keyed_batch"), *keyed)
        except asyncpg.PostgresError as error:
            if error.sqlstate != KEY_RACE or attempt == KEY_RACE_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def _keys_arguments(parts: Sequence[CouponPart], firsts: list[list[str]]) -> tuple[Any, ...]:
    """claim_many_coupons_keyed's key arrays: each distinct user's claim key
    (a keyed user arrives once), each release's, flattened as the users and
    releases are (batches.coupons_arguments)."""
    claim_keys: list[Key] = []
    release_keys: list[Key] = []
    for part, first in zip(parts, firsts, strict=True):
        keys = zip(part.user_ids, part.claim_keys, strict=False)  # claim_keys may be empty
        by_user = {user: key for user, key in keys if key}
        claim_keys.extend(by_user.get(user) for user in first)
        release_keys.extend(part.release_keys or [None] * len(part.releases))
    return (*key_arguments(claim_keys), *key_arguments(release_keys))


def _part_result(row: asyncpg.Record, part: CouponPart, first: list[str]) -> BatchResult:
    """A part's result, with its keyed arrivals' decisions in arrival order."""
    result = batch_result(row, first, part.user_ids)
    result.releases.extend(release_outcomes(row, list(part.releases)))
    if any(part.claim_keys):
        decided = dict(zip(first, keyed_claims(row), strict=False))
        result.keyed_claims.extend(
            decided.get(user) if key else None
            for user, key in zip(part.user_ids, part.claim_keys, strict=True)
        )
    if any(part.release_keys):
        result.keyed_releases.extend(keyed_releases(row, len(part.releases)))
    return result
