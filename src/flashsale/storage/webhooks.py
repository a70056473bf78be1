"""The webhooks' storage: endpoints (the service's WebhookRegistry) and
their delivery state (DeliveryQueue). Each method is one statement of
queries.sql, so each is one short transaction: nothing is held while a
deliverer waits for an endpoint."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from flashsale.domain import Caller
from flashsale.service.ports import Event
from flashsale.service.webhook_ports import Backlog, Delivery, Failure, Replay, Webhook
from flashsale.storage.connections import Connections
from flashsale.storage.events import event
from flashsale.storage.pool import Connection
from flashsale.storage.queries import query
from flashsale.storage.rows import actor_json, actor_of


class WebhookStore:
    def __init__(self, connections: Connections) -> None:
        self._write = connections.write

    async def register_webhook(
        self, *, url: str, events: list[str], secret: str, actor: Caller | None = None
    ) -> Webhook:
        async def register_webhook(connection: Connection) -> asyncpg.Record | None:
            by = actor_json(actor)
            return await connection.fetchrow(query("register_webhook"), url, events, secret, by)

        row = await self._write(register_webhook)
        assert row is not None
        return _webhook(row)

    async def list_webhooks(
        self, *, after: int, limit: int, only: int | None = None
    ) -> list[Webhook]:
        async def list_webhooks(connection: Connection) -> list[asyncpg.Record]:
            return await connection.fetch(query("list_webhooks"), after, limit, only)

        return [_webhook(row) for row in await self._write(list_webhooks)]

    async def enable_webhook(self, webhook_id: int, actor: Caller | None = None) -> bool:
        async def enable_webhook(connection: Connection) -> object:
            return await connection.fetchval(query("enable_webhook"), webhook_id, actor_json(actor))

        return await self._write(enable_webhook) is not None

    async def replay_webhook(
        self,
        webhook_id: int,
        *,
        from_event_id: int,
        from_time: datetime | None,
        actor: Caller | None = None,
    ) -> Replay | None:
        async def replay_webhook(connection: Connection) -> asyncpg.Record | None:
            return await connection.fetchrow(
                query("replay_webhook"), webhook_id, from_event_id, from_time, actor_json(actor)
            )

        row = await self._write(replay_webhook)
        return None if row is None else Replay(row["since"], row["streams"])

    async def delete_webhook(self, webhook_id: int) -> bool:
        async def delete_webhook(connection: Connection) -> object:
            return await connection.fetchval(query("delete_webhook"), webhook_id)

        return await self._write(delete_webhook) is not None

    async def rotate_webhook_secret(
        self, webhook_id: int, secret: str, previous_valid_for: float, actor: Caller | None = None
    ) -> datetime | None:
        async def rotate_webhook_secret(connection: Connection) -> datetime | None:
            until: datetime | None = await connection.fetchval(
                query("rotate_webhook_secret"),
                webhook_id,
                secret,
                previous_valid_for,
                actor_json(actor),
            )
            return until

        return await self._write(rotate_webhook_secret)

    async def queue_events(self, *, page: int) -> int:
        async def queue_webhook_events(connection: Connection) -> int:
            fullest: int = await connection.fetchval(query("queue_webhook_events"), page)
            return fullest

        return await self._write(queue_webhook_events)

    async def lease(self, *, limit: int, lease_seconds: float) -> list[Delivery]:
        async def lease_webhook_deliveries(connection: Connection) -> list[asyncpg.Record]:
            return await connection.fetch(query("lease_webhook_deliveries"), limit, lease_seconds)

        return [_delivery(row) for row in await self._write(lease_webhook_deliveries)]

    async def following(self, delivery: Delivery, *, after: int, limit: int) -> list[Event]:
        async def webhook_batch_events(connection: Connection) -> list[asyncpg.Record]:
            return await connection.fetch(
                query("webhook_batch_events"), delivery.webhook_id, delivery.coupon_id, after, limit
            )

        return [event(row) for row in await self._write(webhook_batch_events)]

    async def delivered(
        self, delivery: Delivery, *, through: int, renew_seconds: float
    ) -> Delivery | None:
        arguments = (*_stream(delivery), through, renew_seconds)

        async def webhook_delivered(connection: Connection) -> asyncpg.Record | None:
            return await connection.fetchrow(query("webhook_delivered"), *arguments)

        row = await self._write(webhook_delivered)
        return None if row is None else _delivery(row)

    async def failed(self, delivery: Delivery, *, error: str, retry_in: float) -> Failure | None:
        async def webhook_failed(connection: Connection) -> asyncpg.Record | None:
            return await connection.fetchrow(
                query("webhook_failed"), *_stream(delivery), error, retry_in
            )

        row = await self._write(webhook_failed)
        return None if row is None else Failure(row["attempts"], row["failing_for"])

    async def caught_up(self, delivery: Delivery) -> None:
        async def webhook_caught_up(connection: Connection) -> None:
            await connection.execute(
                query("webhook_caught_up"), *_stream(delivery), delivery.queued_seq
            )

        await self._write(webhook_caught_up)

    async def release(self, deliveries: list[Delivery]) -> None:
        if not deliveries:
            return
        columns = list(zip(*(_stream(delivery) for delivery in deliveries), strict=True))

        async def release_webhook_leases(connection: Connection) -> None:
            await connection.execute(query("release_webhook_leases"), *map(list, columns))

        await self._write(release_webhook_leases)

    async def disable(self, webhook_id: int, reason: str) -> None:
        async def disable_webhook(connection: Connection) -> None:
            await connection.execute(query("disable_webhook"), webhook_id, reason)

        await self._write(disable_webhook)

    async def backlogs(self) -> list[Backlog]:
        async def webhook_backlogs(connection: Connection) -> list[asyncpg.Record]:
            return await connection.fetch(query("webhook_backlogs"))

        rows = await self._write(webhook_backlogs)
        return [Backlog(row["webhook_id"], row["backlog"], row["lag_seconds"]) for row in rows]


def _stream(delivery: Delivery) -> tuple[int, int, int]:
    return delivery.webhook_id, delivery.coupon_id, delivery.lease


def _webhook(row: asyncpg.Record) -> Webhook:
    return Webhook(
        row["id"],
        row["url"],
        list(row["events"]),
        row["created_at"],
        row["disabled_at"],
        row["disabled_reason"],
        row["failures"],
        row["last_error"],
        row["last_error_at"],
        row["delivered_at"],
        row["pending"],
        row["backlog"],
        row["next_attempt_at"],
        row["lag_seconds"],
        actor_of(row["created_by"]),
        actor_of(row["changed_by"]),
        row["changed_at"],
    )


def _delivery(row: asyncpg.Record) -> Delivery:
    return Delivery(
        row["webhook_id"],
        row["coupon_id"],
        row["lease"],
        row["url"],
        list(row["secrets"]),
        row["attempts"],
        row["queued_seq"],
        None if row["id"] is None else event(row),
    )
