"""The webhook use cases an admin calls: register, list, delete an endpoint;
and the retry policy the deliverer follows (service/delivery.py)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime

from flashsale.config import Settings
from flashsale.domain import Caller, DestinationRefused, WebhookNotFound
from flashsale.service.deadline import deadline
from flashsale.service.signing import new_secret
from flashsale.service.webhook_ports import (
    DestinationCheck,
    Failure,
    Replay,
    Webhook,
    WebhookRegistry,
)


class WebhookService:
    def __init__(
        self,
        registry: WebhookRegistry,
        destinations: DestinationCheck,
        *,
        request_timeout: float = 10.0,
    ) -> None:
        self._registry = registry
        self._destinations = destinations
        self._timeout = request_timeout

    async def register(
        self, *, url: str, events: list[str], secret: str | None, actor: Caller | None = None
    ) -> tuple[Webhook, str]:
        """A new endpoint and its secret (a new one unless given), once its
        URL's host resolves only to addresses webhooks may reach (each
        delivery checks again: names change)."""
        secret = secret or new_secret()
        async with deadline(self._timeout):
            reason = await self._destinations.refusal(url)
            if reason is not None:
                raise DestinationRefused(f"url refused: {reason}")
            webhook = await self._registry.register_webhook(
                url=url, events=events, secret=secret, actor=actor
            )
        return webhook, secret

    async def rotate(
        self,
        webhook_id: int,
        *,
        secret: str | None,
        previous_valid_for: float,
        actor: Caller | None = None,
    ) -> tuple[str, datetime]:
        """A new secret (made unless given) and until when the old one still
        signs beside it; WebhookNotFound."""
        secret = secret or new_secret()
        async with deadline(self._timeout):
            until = await self._registry.rotate_webhook_secret(
                webhook_id, secret, previous_valid_for, actor
            )
        if until is None:
            raise _not_found()
        return secret, until

    async def page(self, *, after: int, limit: int) -> tuple[list[Webhook], int | None]:
        """A page of endpoints by id, and the id the next page starts after
        (None on the last page)."""
        async with deadline(self._timeout):
            webhooks = await self._registry.list_webhooks(after=after, limit=limit + 1)
        if len(webhooks) > limit:
            return webhooks[:limit], webhooks[limit - 1].id
        return webhooks, None

    async def get(self, webhook_id: int) -> Webhook:
        async with deadline(self._timeout):
            found = await self._registry.list_webhooks(after=0, limit=1, only=webhook_id)
        if not found:
            raise _not_found()
        return found[0]

    async def enable(self, webhook_id: int, actor: Caller | None = None) -> Webhook:
        """A disabled endpoint enabled: it gets what it missed, in order."""
        async with deadline(self._timeout):
            if not await self._registry.enable_webhook(webhook_id, actor):
                raise _not_found()
        return await self.get(webhook_id)

    async def replay(
        self,
        webhook_id: int,
        *,
        from_event_id: int,
        from_time: datetime | None,
        actor: Caller | None = None,
    ) -> Replay:
        async with deadline(self._timeout):
            replay = await self._registry.replay_webhook(
                webhook_id, from_event_id=from_event_id, from_time=from_time, actor=actor
            )
        if replay is None:
            raise _not_found()
        return replay

    async def delete(self, webhook_id: int) -> bool:
        async with deadline(self._timeout):
            return await self._registry.delete_webhook(webhook_id)


def _not_found() -> WebhookNotFound:
    return WebhookNotFound("no webhook has this id")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """After n failed attempts of an event, the next waits about
    ``base * 2^(n-1)`` seconds (at most ``most``), with "equal jitter": half
    of it fixed, half random, so endpoints that failed together do not retry
    in step. The endpoint is disabled once one event has failed
    ``max_attempts`` times in a row or has been failing for ``give_up_after``
    seconds (events are delivered in order: the next cannot go first)."""

    base: float = 5.0
    most: float = 3600.0
    max_attempts: int = 40
    give_up_after: float = 24 * 3600.0

    @classmethod
    def configured(cls, settings: Settings) -> RetryPolicy:
        return cls(
            base=settings.webhook_backoff_base,
            most=settings.webhook_backoff_max,
            max_attempts=settings.webhook_max_attempts,
            give_up_after=settings.webhook_retry_hours * 3600,
        )

    def delay(self, attempts: int) -> float:
        """Seconds before the next attempt, after ``attempts`` failed ones."""
        ceiling = min(self.most, self.base * 2.0 ** min(attempts - 1, 60))
        return ceiling / 2 + random.random() * ceiling / 2  # noqa: S311 - jitter, not a secret

    def gives_up(self, failure: Failure) -> bool:
        return failure.attempts >= self.max_attempts or failure.failing_for >= self.give_up_after

    def reason(self, failure: Failure) -> str:
        return (
            f"disabled after {failure.attempts} failed attempts in a row "
            f"over {failure.failing_for:.0f} s"
        )
