"""Writes run once per idempotency key (every route but the claim, whose keys
claim_many_keyed keeps in its batch: storage/store.py).

One transaction holds the key and the effect: take the key
(take_idempotency_key), run the effect in a savepoint, render its answer
(or the client's error) and store the answer's exact bytes under the key,
then commit. The two commit together or not at all, so:

- a retry of a committed request finds the key and replays its bytes;
- a request whose answer was lost to a timeout (503) stored nothing unless
  its effect committed, so its retry tells the truth either way;
- a retry that arrives while the first attempt is still in its transaction
  waits in take_idempotency_key's INSERT for that transaction to end (the
  unique index's check waits for the inserting transaction), then replays
  the committed answer or, if the attempt rolled back, runs itself. A wait
  longer than lock_timeout (DB_STATEMENT_TIMEOUT) answers 409
  idempotency_key_in_use. Waiting rather than answering 409 at once: the
  wait costs nothing (PostgreSQL's own row wait), is bounded by the write
  timeouts, and gives the retry the real answer in the common case of a
  first attempt that commits a moment later.

Why the exact bytes rather than a decision: these answers carry whole rows
(a coupon, a claim) that later writes change; storing the bytes the first
answer was sent as makes a replay identical by construction, with no
renderer that could drift between the two. A client error (404, 409) is
stored like a success, because it is the request's answer; a 503 never is:
it is raised, and the transaction, key and all, rolls back. Neither is a
refusal of the request as sent (a 400 the database decided, such as an
ends_at already past: ``Answer.kept``): the transaction rolls back, so the
client may correct the request and send it again with the same key."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from flashsale.domain import (
    KEY_REUSED,
    DomainError,
    IdempotencyKey,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    ServiceUnavailable,
)
from flashsale.service.ports import Answer, Once
from flashsale.storage.pool import Connection
from flashsale.storage.queries import query

T = TypeVar("T")
Effect = Callable[[Connection], Awaitable[T]]


def in_transaction(effect: Effect[T]) -> Effect[T]:
    async def run(connection: Connection) -> T:
        async with connection.transaction():
            return await effect(connection)

    return run


class _Refused(Exception):
    """Rolls back a keyed write whose answer is not kept (Answer.kept)."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer


async def run_once(once: Once[T], effect: Effect[T], connection: Connection) -> Answer:
    try:
        return await _run_once(once, effect, connection)
    except _Refused as refused:
        return refused.answer


async def _run_once(once: Once[T], effect: Effect[T], connection: Connection) -> Answer:
    async with connection.transaction():
        stored = await take_key(connection, once.key)
        if stored is not None:
            return stored
        result: T | DomainError
        try:
            async with connection.transaction():  # a savepoint: a failed effect undoes itself
                result = await effect(connection)
        except ServiceUnavailable:
            raise
        except DomainError as error:  # the client's error is this request's answer
            result = error
        answer = once.render(result)
        if not answer.kept:
            raise _Refused(answer)  # the key goes with the transaction
        await connection.execute(
            query("keep_idempotent_answer"),
            once.key.scope,
            once.key.key,
            answer.status,
            answer.body,
        )
        return answer


async def take_key(connection: Connection, key: IdempotencyKey) -> Answer | None:
    """None when the key is this transaction's now; else the stored answer."""
    try:
        row = await connection.fetchrow(
            query("take_idempotency_key"), key.scope, key.key, key.fingerprint
        )
    except (asyncpg.LockNotAvailableError, asyncpg.QueryCanceledError):
        # lock_timeout or statement_timeout (the same bound; either may fire
        # first) while waiting for the first attempt's transaction: the one
        # thing this INSERT waits for is another transaction's row of the key.
        raise IdempotencyKeyInUse(
            "a request with this Idempotency-Key is still in progress, retry shortly"
        ) from None
    assert row is not None
    if row["fresh"]:
        return None
    if row["fingerprint"] != key.fingerprint:
        raise key_reused()
    return Answer(row["status"], row["body"], replayed=True)


def key_reused() -> IdempotencyKeyReused:
    return IdempotencyKeyReused(KEY_REUSED)
