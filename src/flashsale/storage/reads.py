"""The read side's storage: coupons too big for one query result (a coupon
with a million claimers streamed from one snapshot, pages of claims, pages of
coupons) and the live dashboard's tick. Implements the service's CouponReader
and ActivityReader; each method runs the query that bears its name."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from flashsale.domain import CouponNotFound, ServiceUnavailable
from flashsale.service.ports import (
    ClaimRow,
    ClaimView,
    CouponActivity,
    CouponHeader,
    CouponSnapshot,
    CouponStock,
    EntryRow,
    EntryView,
)
from flashsale.storage.connections import Connections
from flashsale.storage.pool import Connection
from flashsale.storage.queries import query
from flashsale.storage.rows import claim_view, coupon_page, coupon_state

# Rows per FETCH: about 300 KB of JSON for typical user ids, one round trip each.
BATCH_ROWS = 20_000


class CouponReadStore:
    """Coupon reads that page or stream instead of building one huge result."""

    def __init__(self, connections: Connections, batch_rows: int = BATCH_ROWS) -> None:
        self._connection = connections.connection
        self._acquire_timeout = connections.acquire_timeout
        # The pool has no command_timeout (connections.py): reads bound each
        # round trip themselves; a cancelled read commits nothing.
        self._timeout = connections.read_timeout
        self._batch_rows = batch_rows
        # A stream holds a connection for its whole body: leave the rest of the
        # pool to claims even when many huge reads arrive at once.
        self._streams = asyncio.Semaphore(max(1, connections.max_size // 2))

    async def open_snapshot(self, name: str) -> CouponSnapshot | None:
        # A coupon whose claimers fit in one FETCH is read in one statement,
        # on a connection held for that round trip alone: a small read never
        # waits behind large ones, nor five times behind the claim batches.
        async with self._connection() as connection:
            row = await connection.fetchrow(
                query("small_coupon"), name, self._batch_rows, timeout=self._timeout
            )
        if row is None:
            return None
        if row["claimers"] is not None:
            return CouponSnapshot(coupon_state(row), _one_batch(row["claimers"]))
        found: list[CouponHeader] = []
        batches = self._large_coupon(name, found)
        try:
            await anext(batches)  # runs up to the first yield: the coupon row is read
        except StopAsyncIteration:
            return None
        return CouponSnapshot(found[0], batches)

    async def _large_coupon(
        self, name: str, found: list[CouponHeader]
    ) -> AsyncGenerator[list[str], None]:
        # A stream slot, and a snapshot of its own (the header again, then
        # every batch), held until the last batch is read.
        async with self._stream_slot(), self._snapshot() as connection:
            row = await connection.fetchrow(query("coupon_header"), name, timeout=self._timeout)
            if row is None:
                return
            async for batch in self._claimers(connection, row, found):
                yield batch

    @asynccontextmanager
    async def _snapshot(self) -> AsyncIterator[Connection]:
        # REPEATABLE READ: the header and every FETCH see one snapshot, so
        # amount - remaining_amount always equals the claimers streamed
        # (queries.sql coupon_header).
        async with (
            self._connection() as connection,
            connection.transaction(isolation="repeatable_read", readonly=True),
        ):
            yield connection

    async def _claimers(
        self, connection: Connection, row: asyncpg.Record, found: list[CouponHeader]
    ) -> AsyncGenerator[list[str], None]:
        """The header (into ``found``, then an empty batch), then the claimers."""
        found.append(coupon_state(row))
        yield []
        await connection.execute(query("coupon_claimers"), row["id"], timeout=self._timeout)
        fetch = query("fetch_coupon_claimers").format(rows=int(self._batch_rows))
        while batch := await connection.fetch(fetch, timeout=self._timeout):
            yield [record[0] for record in batch]

    async def claims_page(self, name: str, *, after: int, limit: int) -> list[ClaimRow] | None:
        async with self._connection() as connection:
            rows = await connection.fetch(
                query("claims_page"), name, after, limit, timeout=self._timeout
            )
        return coupon_page(rows, lambda row: ClaimRow(row["id"], row["user_id"], row["claimed_at"]))

    async def coupons_page(self, *, after: str, limit: int) -> list[CouponStock]:
        async with self._connection() as connection:
            rows = await connection.fetch(
                query("coupons_page"), after, limit, timeout=self._timeout
            )
        return [coupon_state(row) for row in rows]

    async def find_claim(self, *, coupon_name: str, user_id: str) -> ClaimView | EntryView | None:
        async with self._connection() as connection:
            row = await connection.fetchrow(
                query("find_claim"), coupon_name, user_id, timeout=self._timeout
            )
        if row is None:
            raise CouponNotFound(f"coupon {coupon_name!r} does not exist")
        if row["user_id"] is not None:
            return claim_view(row)
        return _entry_view(row, coupon_name, user_id)

    async def entries_page(
        self, name: str, *, after: bytes | None, limit: int
    ) -> list[EntryRow] | None:
        async with self._connection() as connection:
            rows = await connection.fetch(
                query("entries_page"), name, after, limit, timeout=self._timeout
            )
        if not rows:
            return None
        return [EntryRow(row["entrant"], row["place"]) for row in rows if row["entrant"]]

    async def user_claims_page(self, user_id: str, *, before: int, limit: int) -> list[ClaimView]:
        async with self._connection() as connection:
            rows = await connection.fetch(
                query("user_claims_page"), user_id, before, limit, timeout=self._timeout
            )
        return [claim_view(row) for row in rows]

    async def recent_activity(self, *, coupons: int, claimers: int) -> list[CouponActivity]:
        async with self._connection() as connection:
            rows = await connection.fetch(
                query("recent_activity"), coupons, claimers, timeout=self._timeout
            )
        return [
            CouponActivity(
                row["name"],
                row["amount"],
                row["remaining_amount"],
                row["recent"],
                row["status"],
                row["holds"],
                row["redeemed"],
                row["allocation"],
                row["entries"],
                row["waitlisted"],
            )
            for row in rows
        ]

    def _stream_slot(self) -> _Slot:
        return _Slot(self._streams, self._acquire_timeout)


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
            _count_refused()
            raise ServiceUnavailable("too many large reads at once, retry shortly") from None

    async def __aexit__(self, *_: object) -> None:
        self._semaphore.release()


def _count_refused() -> None:
    # Imported here, in the workers: flashsale.metrics must not be imported
    # by the CLI process before it sets PROMETHEUS_MULTIPROC_DIR.
    from flashsale.metrics import count_cut

    count_cut("reads_full")


async def _one_batch(claimers: list[str]) -> AsyncGenerator[list[str], None]:
    """A small coupon's claimers, as CouponSnapshot takes them: read already."""
    yield claimers


def _entry_view(row: asyncpg.Record, coupon_name: str, user_id: str) -> EntryView | None:
    """A raffle entrant without a live claim: entered until the draw is
    done, then waitlisted while its place is after the places served; None
    otherwise (never entered, or served and the claim is gone)."""
    if not row["entered"]:
        return None
    if row["place"] is None:
        return EntryView(user_id, coupon_name, "entered", None)
    if row["place"] > row["served"]:
        return EntryView(user_id, coupon_name, "waitlisted", row["place"])
    return None
