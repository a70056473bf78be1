"""The events feed's storage (the service's EventReader): pages of the
global feed and of one coupon's events, each the query that bears its name.
The rows are written by the triggers of migration 0009, never from here."""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec

from flashsale.service.ports import Event, FeedPosition
from flashsale.storage.connections import Connections
from flashsale.storage.queries import query
from flashsale.storage.rows import coupon_page

_DATA = msgspec.json.Decoder(dict[str, Any])


class EventStore:
    def __init__(self, connections: Connections) -> None:
        self._connection = connections.connection
        # A client-side bound per round trip (the pool has none, connections.py).
        self._timeout = connections.read_timeout

    async def events_page(self, *, after: FeedPosition, limit: int) -> list[Event]:
        async with self._connection() as connection:
            rows = await connection.fetch(
                query("events_page"), str(after.xid), after.event_id, limit, timeout=self._timeout
            )
        return [event(row) for row in rows]

    async def coupon_events_page(self, name: str, *, after: int, limit: int) -> list[Event] | None:
        async with self._connection() as connection:
            rows = await connection.fetch(
                query("coupon_events_page"), name, after, limit, timeout=self._timeout
            )
        return coupon_page(rows, event)


def event(row: asyncpg.Record) -> Event:
    return Event(
        event_id=row["id"],
        xid=int(row["xid"]),
        coupon_name=row["coupon_name"],
        seq=row["seq"],
        type=row["type"],
        user_id=row["user_id"],
        at=row["at"],
        data=_DATA.decode(row["data"]),
    )
