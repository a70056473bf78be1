"""Reads of coupons too big for one query result: a coupon with a million
claimers read as a stream from one snapshot, pages of claims, pages of coupons."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

from flashsale.domain import ServiceUnavailable
from flashsale.storage.errors import database_unavailable_as_503
from flashsale.storage.pool import Connection, Pool
from flashsale.storage.queries import query

# Rows per FETCH: about 300 KB of JSON for typical user ids, one round trip each.
BATCH_ROWS = 20_000


@dataclass(frozen=True, slots=True)
class CouponHeader:
    name: str
    amount: int
    remaining_amount: int


@dataclass(frozen=True, slots=True)
class ClaimRow:
    claim_id: int
    user_id: str
    claimed_at: datetime


@dataclass(frozen=True, slots=True)
class CouponStock:
    name: str
    amount: int
    remaining_amount: int


class CouponSnapshot:
    """A coupon and its claimers as of one REPEATABLE READ snapshot, on one
    pooled connection held until the claimers are read.

    The rows come from a generator already started inside its transaction: it
    releases the connection when it ends, fails or is closed, and the event
    loop closes it should its reader drop it unread."""

    def __init__(self, header: CouponHeader, batches: AsyncGenerator[list[str], None]) -> None:
        self.header = header
        self._batches = batches

    def user_id_batches(self) -> AsyncGenerator[list[str], None]:
        """The claimers' user ids in claim order, in batches; iterate once."""
        return self._batches

    async def close(self) -> None:
        await self._batches.aclose()


class ClaimerReader:
    """Coupon reads that page or stream instead of building one huge result."""

    def __init__(self, pool: Pool, acquire_timeout: float, batch_rows: int = BATCH_ROWS) -> None:
        self.pool = pool
        self.acquire_timeout = acquire_timeout
        self.batch_rows = batch_rows
        # A stream holds a connection for its whole body: leave the rest of the
        # pool to claims even when many huge reads arrive at once.
        self._streams = asyncio.Semaphore(max(1, pool.get_max_size() // 2))

    async def open_snapshot(self, name: str) -> CouponSnapshot | None:
        """The coupon row read in a fresh snapshot, or None (nothing held) when
        there is no such coupon."""
        found: list[CouponHeader] = []
        batches = self._snapshot(name, found)
        try:
            await anext(batches)  # runs up to the first yield: the coupon row is read
        except StopAsyncIteration:
            return None
        return CouponSnapshot(found[0], batches)

    async def _snapshot(
        self, name: str, found: list[CouponHeader]
    ) -> AsyncGenerator[list[str], None]:
        async with (
            self._stream_slot(),
            self._connection() as connection,
            connection.transaction(isolation="repeatable_read", readonly=True),
        ):
            row = await connection.fetchrow(query("coupon_header"), name)
            if row is None:
                return
            found.append(CouponHeader(row["name"], row["amount"], row["remaining_amount"]))
            yield []
            await connection.execute(query("coupon_claimers"), row["id"])
            fetch = query("fetch_coupon_claimers").format(rows=int(self.batch_rows))
            while batch := await connection.fetch(fetch):
                yield [record[0] for record in batch]

    async def claims_page(self, name: str, after: int, limit: int) -> list[ClaimRow] | None:
        """Up to ``limit`` claims after claim ``after`` in claim order; None when
        there is no such coupon."""
        async with self._connection() as connection:
            rows = await connection.fetch(query("claims_page"), name, after, limit)
        if not rows:
            return None
        return [
            ClaimRow(row["id"], row["user_id"], row["claimed_at"])
            for row in rows
            if row["id"] is not None
        ]

    async def coupons_page(self, after: str, limit: int) -> list[CouponStock]:
        """Up to ``limit`` coupons named after ``after``, by name."""
        async with self._connection() as connection:
            rows = await connection.fetch(query("coupons_page"), after, limit)
        return [CouponStock(row["name"], row["amount"], row["remaining_amount"]) for row in rows]

    def _stream_slot(self) -> _Slot:
        return _Slot(self._streams, self.acquire_timeout)

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Connection]:
        """A pooled connection, or 503 once the pool has been busy for too long."""
        with database_unavailable_as_503():
            async with self.pool.acquire(timeout=self.acquire_timeout) as connection:
                yield connection


class _Slot:
    """One of the stream slots, or 503 when none frees up in time."""

    def __init__(self, semaphore: asyncio.Semaphore, timeout: float) -> None:
        self._semaphore = semaphore
        self._timeout = timeout

    async def __aenter__(self) -> None:
        try:
            # asyncio.timeout, not wait_for: a permit granted as time runs out
            # is handed on rather than lost.
            async with asyncio.timeout(self._timeout):
                await self._semaphore.acquire()
        except TimeoutError:
            raise ServiceUnavailable("too many large reads at once, retry shortly") from None

    async def __aexit__(self, *_: object) -> None:
        self._semaphore.release()
