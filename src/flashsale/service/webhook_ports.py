"""What the webhook use cases need from storage and from the network, and
the plain values they get back. ``flashsale.storage`` implements the store
Protocols, ``flashsale.delivery`` the sender and the destination check;
nothing here knows SQL or sockets. (The coupons' ports: ``ports.py``.)"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from flashsale.domain import Caller
from flashsale.service.ports import Event


@dataclass(frozen=True, slots=True)
class Webhook:
    """An endpoint as admins see it (never its secret), with its delivery
    state: ``failures`` failed attempts in a row of its most-failing event."""

    id: int
    url: str
    events: list[str]
    created_at: datetime
    disabled_at: datetime | None
    disabled_reason: str | None
    failures: int
    last_error: str | None
    last_error_at: datetime | None
    delivered_at: datetime | None
    pending: int  # coupons with events still to deliver
    backlog: int  # events still to deliver, at most
    next_attempt_at: datetime | None  # when the first of them is due
    lag_seconds: float | None  # age of the oldest event not delivered yet
    created_by: dict[str, str] | None = None  # who registered it (kind, name)
    changed_by: dict[str, str] | None = None  # who made its last change
    changed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Replay:
    since: datetime  # the earliest time replayed (never before registration)
    streams: int  # coupons whose events are sent again


@dataclass(frozen=True, slots=True)
class Delivery:
    """One leased stream (an endpoint's events of one coupon) and its next
    event; only the holder of ``lease`` may record the outcome."""

    webhook_id: int
    coupon_id: int
    lease: int
    url: str
    secrets: list[str]  # every secret valid now, the current one first
    attempts: int  # failed attempts of this event so far
    queued_seq: int
    event: Event | None  # None: nothing left (caught up)


@dataclass(frozen=True, slots=True)
class Backlog:
    webhook_id: int
    events: int  # queued and not delivered, at most
    lag_seconds: float  # age of the oldest of them


@dataclass(frozen=True, slots=True)
class Failure:
    attempts: int  # failed attempts in a row of this event, this one included
    failing_for: float  # seconds since the first of them


@dataclass(frozen=True, slots=True)
class PostOutcome:
    delivered: bool  # a 2xx within the timeout
    error: str | None  # what happened otherwise (no secret, no signature)
    retry_after: float | None = None  # what a 429 or 503 asked for, capped
    gone: bool = False  # a 410: the endpoint asks to be sent nothing more


class WebhookSender(Protocol):
    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> PostOutcome:
        """One POST; never raises for what the endpoint or the network does."""

    async def close(self) -> None: ...


class DestinationCheck(Protocol):
    async def refusal(self, url: str) -> str | None:
        """Why POSTs to ``url`` would be refused (its address, its form);
        None when they would not."""


class WebhookRegistry(Protocol):
    """``actor``: who makes a change, kept as the endpoint's changed_by."""

    async def register_webhook(
        self, *, url: str, events: list[str], secret: str, actor: Caller | None = None
    ) -> Webhook: ...

    async def list_webhooks(
        self, *, after: int, limit: int, only: int | None = None
    ) -> list[Webhook]: ...

    async def enable_webhook(self, webhook_id: int, actor: Caller | None = None) -> bool:
        """False: no such endpoint."""

    async def replay_webhook(
        self,
        webhook_id: int,
        *,
        from_event_id: int,
        from_time: datetime | None,
        actor: Caller | None = None,
    ) -> Replay | None:
        """None: no such endpoint."""

    async def delete_webhook(self, webhook_id: int) -> bool:
        """False: no such endpoint."""

    async def rotate_webhook_secret(
        self, webhook_id: int, secret: str, previous_valid_for: float, actor: Caller | None = None
    ) -> datetime | None:
        """Until when the replaced secret still signs; None: no such endpoint."""


class DeliveryQueue(Protocol):
    """Delivery state in the database; each call is one short transaction."""

    async def queue_events(self, *, page: int) -> int:
        """Feed pages turned into streams' work; the fullest page's size."""

    async def lease(self, *, limit: int, lease_seconds: float) -> list[Delivery]: ...

    async def following(self, delivery: Delivery, *, after: int, limit: int) -> list[Event]:
        """The leased stream's next events after seq ``after`` (a batch's rest)."""

    async def delivered(
        self, delivery: Delivery, *, through: int, renew_seconds: float
    ) -> Delivery | None:
        """Events up to seq ``through`` recorded; the same stream's next
        delivery (lease renewed) or None."""

    async def failed(self, delivery: Delivery, *, error: str, retry_in: float) -> Failure | None:
        """Recorded; None when the lease was lost meanwhile (nothing recorded)."""

    async def caught_up(self, delivery: Delivery) -> None: ...

    async def release(self, deliveries: list[Delivery]) -> None: ...

    async def disable(self, webhook_id: int, reason: str) -> None: ...

    async def backlogs(self) -> list[Backlog]:
        """Enabled endpoints with events queued and not delivered."""
