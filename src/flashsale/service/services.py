"""Every use case of a running worker, as the HTTP layer receives them from
the composition root (flashsale.wiring)."""

from __future__ import annotations

from dataclasses import dataclass

from flashsale.service.coupons import CouponService
from flashsale.service.dashboard import DashboardFeed
from flashsale.service.event_feed import EventFeed
from flashsale.service.events import EventReads
from flashsale.service.key_quota import KeyQuota
from flashsale.service.reads import CouponReads
from flashsale.service.webhooks import WebhookService


@dataclass(frozen=True, slots=True)
class Services:
    coupons: CouponService  # the writes: create, claim, health
    reads: CouponReads
    dashboard: DashboardFeed
    events: EventReads
    event_feed: EventFeed  # the live stream: one poller per worker
    webhooks: WebhookService
    key_quota: KeyQuota  # Idempotency-Keys per caller, this worker's count
