"""The live dashboard's data: every few hundred milliseconds, the most active
coupons with their stock, claims per second and latest claimers.

Claims per second come from how much each coupon's claimed count grew over
the last few seconds of polls, so a tick costs one cheap query (see
recent_activity in queries.sql) per worker, and nothing on the claim path."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field, fields

from flashsale.domain import ServiceUnavailable
from flashsale.service.periodic import stop_task
from flashsale.service.ports import ActivityReader, CouponActivity

TICK_SECONDS = 0.5
RATE_WINDOW_SECONDS = 3.0
MAX_COUPONS = 200
RECENT_CLAIMERS = 10

log = logging.getLogger("flashsale.dashboard")


@dataclass(frozen=True, slots=True)
class CouponTile(CouponActivity):
    """A coupon's activity as the query read it, and its claims per second.
    A raffle's phase is ``status`` (entries_open, drawing, drawn)."""

    claims_per_second: float = 0.0


@dataclass(frozen=True, slots=True)
class DashboardSnapshot:
    at: float  # Unix time of the poll
    database: str  # "ok" or "unavailable"
    coupons: list[CouponTile] = field(default_factory=list)


class ClaimRateMeter:
    """Claims per second per coupon, from claimed counts seen at each poll."""

    def __init__(self, window: float = RATE_WINDOW_SECONDS) -> None:
        self.window = window
        self._samples: deque[tuple[float, dict[str, int]]] = deque()

    def observe(self, now: float, claimed: dict[str, int]) -> dict[str, float]:
        # Keep one sample at least a window old as the baseline.
        while len(self._samples) > 1 and now - self._samples[1][0] >= self.window:
            self._samples.popleft()
        rates: dict[str, float] = {}
        if self._samples:
            then, before = self._samples[0]
            elapsed = max(now - then, 1e-6)
            for name, count in claimed.items():
                rates[name] = max(count - before.get(name, count), 0) / elapsed
        self._samples.append((now, claimed))
        return rates


def tiles(activity: list[CouponActivity], rates: dict[str, float]) -> list[CouponTile]:
    """Busiest first; equally busy coupons keep the query's order (most recent claim first)."""
    built = [
        CouponTile(
            **{f.name: getattr(a, f.name) for f in fields(a)},
            claims_per_second=round(rates.get(a.name, 0.0), 1),
        )
        for a in activity
    ]
    return sorted(built, key=lambda tile: -tile.claims_per_second)


class DashboardFeed:
    """One poller per worker, shared by every open dashboard of that worker:
    the database sees one query per tick however many people watch, and
    none at all when nobody does (the poller stops with its last viewer)."""

    def __init__(self, reader: ActivityReader, tick: float = TICK_SECONDS) -> None:
        self.reader = reader
        self.tick = tick
        self._viewers = 0
        self._latest: DashboardSnapshot | None = None
        self._published = asyncio.Event()
        self._poller: asyncio.Task[None] | None = None

    async def snapshots(
        self, stopping: Callable[[], bool] = lambda: False
    ) -> AsyncGenerator[DashboardSnapshot, None]:
        """Each new snapshot, starting with the latest one, until ``stopping()``
        says so or the consumer stops iterating."""
        self._viewers += 1
        try:
            self._start_poller(stopping)
            seen: DashboardSnapshot | None = None
            while not stopping():
                if self._latest is seen or self._latest is None:
                    await self._published.wait()
                    continue
                seen = self._latest
                yield seen
        finally:
            self._viewers -= 1

    async def close(self) -> None:
        """Stop polling (shutdown); open streams end with their poller."""
        await stop_task(self._poller)

    def _start_poller(self, stopping: Callable[[], bool]) -> None:
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll_while_watched(stopping))

    async def _poll_while_watched(self, stopping: Callable[[], bool]) -> None:
        meter = ClaimRateMeter()
        try:
            while self._viewers > 0 and not stopping():
                self._publish(await self._poll(meter))
                await asyncio.sleep(self.tick)
        finally:
            self._latest = None  # a later viewer must not start from a stale view
            self._wake_viewers()

    def _publish(self, snapshot: DashboardSnapshot) -> None:
        self._latest = snapshot
        self._wake_viewers()

    def _wake_viewers(self) -> None:
        published, self._published = self._published, asyncio.Event()
        published.set()

    async def _poll(self, meter: ClaimRateMeter) -> DashboardSnapshot:
        try:
            activity = await self.reader.recent_activity(
                coupons=MAX_COUPONS, claimers=RECENT_CLAIMERS
            )
        except ServiceUnavailable:
            return DashboardSnapshot(time.time(), "unavailable")
        except Exception as error:  # a bug must not stop every open dashboard
            log.error("dashboard poll failed: %s", type(error).__name__)
            return DashboardSnapshot(time.time(), "unavailable")
        claimed = {a.name: a.amount - a.remaining_amount for a in activity}
        rates = meter.observe(time.monotonic(), claimed)
        return DashboardSnapshot(time.time(), "ok", tiles(activity, rates))
