"""Prometheus metrics, correct across Granian's worker processes.

``flashsale serve`` points PROMETHEUS_MULTIPROC_DIR at a fresh directory
before the workers start (``metrics_dir.prepare_multiprocess_dir``); prometheus_client
then keeps every value in a per-process file there and ``render_metrics``
adds them up, whichever worker answers ``/metrics``. Without the variable
(tests, in-process use) values live in this process's memory.

prometheus_client picks its storage when it is first imported, so nothing
imported by ``flashsale.cli`` may import this module: the HTTP layer and the
claim engine do, inside the workers.
"""

from __future__ import annotations

import os
from functools import cache

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

from flashsale.metrics_dir import MULTIPROC_ENV

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Coupon names are chosen by admins, and a claim may name any string: only a
# coupon the database confirmed gets its own label, and a worker labels at
# most this many; the rest are counted under OTHER_COUPONS.
MAX_COUPON_LABELS = 1000
UNKNOWN_COUPON = "(unknown)"
OTHER_COUPONS = "(other)"
# Outcomes that prove the coupon exists.
_EXISTING = frozenset(
    {"claimed", "already_claimed", "sold_out", "not_started", "sale_ended", "paused"}
)

# Why a bound cut a request off or refused it (http/bounds.py, http/streams.py,
# http/spool.py, http/limits.py, storage/reads.py); every reason is exposed
# from the start at 0.
CUT_REASONS = (
    "body_timeout",
    "send_timeout",
    "too_slow",
    "response_timeout",
    "evicted",
    "worker_full",
    "streams_full",
    "stream_idle",
    "spool_full",
    "reads_full",
    "rate_limited",
)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)


def multiprocess_mode() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


# In multiprocess mode every update asks os.getpid() (a system call) to learn
# whether it now runs in a forked child: three times a request (its share of
# a worker's CPU is in docs/benchmarks.md). The same answer, kept in memory and refreshed in
# each child at fork, through the hook prometheus_client offers for a custom
# process identifier (read when a metric is created; ours are created later).
_pid = os.getpid()


def _refresh_pid() -> None:
    global _pid
    _pid = os.getpid()


def _cached_pid() -> int:
    return _pid


os.register_at_fork(after_in_child=_refresh_pid)
if multiprocess_mode():
    values.ValueClass = values.MultiProcessValue(  # type: ignore[no-untyped-call]
        process_identifier=_cached_pid
    )


class Metrics:
    """This process's metrics. Children are cached by label values: a hot
    path pays one dict lookup and one increment."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.claims = Counter(
            "flashsale_claims",
            "Claims decided, by coupon and outcome (claimed, already_claimed, sold_out, "
            "not_started, sale_ended, paused, not_found, unavailable)",
            ["coupon", "outcome"],
            registry=registry,
        )
        self.claim_batch_size = Histogram(
            "flashsale_claim_batch_size",
            "Claims decided together in one database round trip, by lane (claim, sold_out)",
            ["lane"],
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.lane_batch_size = Histogram(
            "flashsale_claim_lane_batch_size",
            "Claims and releases in one claim-lane batch (one transaction), by lane",
            ["lane"],
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.lane_batch_coupons = Histogram(
            "flashsale_claim_lane_batch_coupons",
            "Coupons decided together in one claim-lane batch, by lane",
            ["lane"],
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.lane_wait = Histogram(
            "flashsale_claim_lane_wait_seconds",
            "How long a claim-lane batch's oldest arrival waited before it was sent, by lane",
            ["lane"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.request_duration = Histogram(
            "flashsale_http_request_duration_seconds",
            "Time to handle a request, by method, route template and status",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.claim_endings = Counter(
            "flashsale_claim_endings",
            "Claims that ended or changed through this worker, by what happened "
            "(released, redeemed, expired)",
            ["event"],
            registry=registry,
        )
        self.db_errors = Counter(
            "flashsale_db_errors",
            "Database failures turned into 503, by exception class",
            ["kind"],
            registry=registry,
        )
        self.pool_connections = Gauge(
            "flashsale_db_pool_connections",
            "Pooled database connections, by state (in_use, idle), summed over workers",
            ["state"],
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.pool_max = Gauge(
            "flashsale_db_pool_max_connections",
            "Most pooled connections, summed over workers",
            multiprocess_mode="livesum",
            registry=registry,
        )
        # Per endpoint (admins register few): every worker samples the same
        # database state, so the live maximum is the value.
        self.webhook_lag = Gauge(
            "flashsale_webhook_lag_seconds",
            "Age of the oldest event not yet delivered to each enabled webhook endpoint",
            ["webhook"],
            multiprocess_mode="livemax",
            registry=registry,
        )
        self.webhook_backlog = Gauge(
            "flashsale_webhook_backlog",
            "Events queued and not yet delivered to each enabled webhook endpoint (at most)",
            ["webhook"],
            multiprocess_mode="livemax",
            registry=registry,
        )
        self.held = Gauge(
            "flashsale_held",
            "What the workers hold for requests now, summed over workers, by what "
            "(requests in flight, event streams open, bytes spooled for slow readers)",
            ["what"],
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.requests_cut = Counter(
            "flashsale_requests_cut",
            "Requests a bound cut off or refused, by reason (" + ", ".join(CUT_REASONS) + ")",
            ["reason"],
            registry=registry,
        )
        self._cut_children = {reason: self.requests_cut.labels(reason) for reason in CUT_REASONS}
        self._webhook_labels: set[str] = set()
        self._coupon_labels: set[str] = set()
        self._claim_children: dict[tuple[str, str], Counter] = {}
        self._request_children: dict[tuple[str, str, int], Histogram] = {}
        self._batch_children: dict[str, Histogram] = {}
        self._lane_children: dict[int, tuple[Histogram, Histogram, Histogram]] = {}

    def count_claim(self, coupon: str, outcome: str) -> None:
        child = self._claim_children.get((coupon, outcome))
        if child is None:
            child = self._claim_child(self._coupon_label(coupon, outcome), outcome)
        child.inc()

    def _claim_child(self, label: str, outcome: str) -> Counter:
        """The counter of (label, outcome), made once: a coupon's own label is
        kept by its name, a shared one (OTHER_COUPONS, UNKNOWN_COUPON) by the
        label, so past MAX_COUPON_LABELS a claim still finds its counter in one
        look-up, and both maps stay bounded (unknown names are never keys)."""
        child = self._claim_children.get((label, outcome))
        if child is None:
            child = self._claim_children[(label, outcome)] = self.claims.labels(label, outcome)
        return child

    def _coupon_label(self, coupon: str, outcome: str) -> str:
        if coupon in self._coupon_labels:
            return coupon
        if outcome not in _EXISTING:
            return UNKNOWN_COUPON
        if len(self._coupon_labels) >= MAX_COUPON_LABELS:
            return OTHER_COUPONS
        self._coupon_labels.add(coupon)
        return coupon

    def count_claim_event(self, event: str, count: int = 1) -> None:
        if count:
            self.claim_endings.labels(event).inc(count)

    def observe_batch(self, lane: str, size: int) -> None:
        child = self._batch_children.get(lane)
        if child is None:
            child = self._batch_children[lane] = self.claim_batch_size.labels(lane)
        child.observe(size)

    def observe_lane_batch(self, lane: int, size: int, coupons: int, wait: float) -> None:
        children = self._lane_children.get(lane)
        if children is None:
            label = str(lane)
            children = self._lane_children[lane] = (
                self.lane_batch_size.labels(label),
                self.lane_batch_coupons.labels(label),
                self.lane_wait.labels(label),
            )
        children[0].observe(size)
        children[1].observe(coupons)
        children[2].observe(wait)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self.request_duration.labels(
                method, route, str(status)
            )
        child.observe(seconds)

    def count_cut(self, reason: str) -> None:
        self._cut_children[reason].inc()

    def count_database_error(self, error: BaseException) -> None:
        self.db_errors.labels(type(error).__name__).inc()

    def sample_webhooks(self, states: dict[int, tuple[int, float]]) -> None:
        """Each endpoint's (backlog, lag seconds); endpoints no longer listed
        (caught up, disabled, deleted) drop out of the gauges."""
        labels = {str(webhook_id) for webhook_id in states}
        for gone in self._webhook_labels - labels:
            self.webhook_lag.remove(gone)
            self.webhook_backlog.remove(gone)
        self._webhook_labels = labels
        for webhook_id, (backlog, lag) in states.items():
            self.webhook_backlog.labels(str(webhook_id)).set(backlog)
            self.webhook_lag.labels(str(webhook_id)).set(lag)

    def sample_held(self, requests: int, streams: int, spooled_bytes: int) -> None:
        self.held.labels("requests").set(requests)
        self.held.labels("streams").set(streams)
        self.held.labels("spooled_bytes").set(spooled_bytes)

    def sample_pool(self, size: int, idle: int, max_size: int) -> None:
        self.pool_connections.labels("in_use").set(size - idle)
        self.pool_connections.labels("idle").set(idle)
        self.pool_max.set(max_size)


@cache
def get_metrics() -> Metrics:
    """The process's metrics, created on first use (never at import)."""
    return Metrics(CollectorRegistry(auto_describe=True))


def count_database_error(error: BaseException) -> None:
    get_metrics().count_database_error(error)


def count_cut(reason: str) -> None:
    """A request cut off or refused by a bound (one of CUT_REASONS)."""
    get_metrics().count_cut(reason)


def render_metrics() -> bytes:
    """The text exposition: every worker's values when multiprocess."""
    if multiprocess_mode():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(get_metrics().registry)


def forget_this_process() -> None:
    """At a worker's exit: its live gauges (pool use) stop counting."""
    if multiprocess_mode():
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
