"""Settings, read once from the environment (the original's variables first)."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated
from urllib.parse import quote, urlsplit, urlunsplit

import msgspec


class ClaimStrategyName(StrEnum):
    BATCHED = "batched"
    TRANSACTION = "transaction"


class WebhookDelivery(StrEnum):
    WORKERS = "workers"
    SEPARATE = "separate"


Positive = Annotated[int, msgspec.Meta(ge=1)]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
NonNegative = Annotated[int, msgspec.Meta(ge=0)]
NonNegativeFloat = Annotated[float, msgspec.Meta(ge=0)]
Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    app_host: str = "0.0.0.0"  # noqa: S104 - containers must listen beyond loopback
    app_port: Port = 8080
    workers: Positive = 2
    database_url: str | None = None
    # Start-up steps (create the database, migrate) through another URL, e.g.
    # straight to PostgreSQL while serving goes through a pooler.
    migration_database_url: str | None = None
    db_host: str | None = None
    db_port: Port = 5432
    db_user: str = "postgres"
    db_password: str = "postgres"  # noqa: S105 - the original's documented default
    db_name: str = "coupondb"
    db_sslmode: str = "disable"
    data_dir: Path = Path(".flashsale")
    claim_strategy: ClaimStrategyName = ClaimStrategyName.BATCHED
    claim_batch_max: Positive = 500
    claim_queue_max: Positive = 20_000
    db_pool_min: Positive = 2
    db_pool_max: Positive = 10
    db_acquire_timeout: PositiveFloat = 2.0
    db_statement_timeout: PositiveFloat = 5.0
    # asyncpg's prepared-statement cache per connection (its default, 100).
    # 0 behind a transaction-mode pooler that does not track prepared
    # statements (PgBouncer < 1.21, or without max_prepared_statements).
    db_statement_cache_size: NonNegative = 100
    request_timeout: PositiveFloat = 10.0  # whole request, queues included, then 503
    # Seconds a worker may take to finish its accepted requests after SIGTERM
    # before Granian kills it (workers_kill_timeout).
    shutdown_timeout: Positive = 8
    # Seconds an Idempotency-Key's answer is kept (the contract: at least a day).
    idempotency_ttl: Annotated[int, msgspec.Meta(ge=86_400)] = 86_400
    admin_token: str | None = None
    log_level: str = "info"
    log_access: bool = False  # one JSON line per request (costs throughput)
    # Webhooks (service/webhooks.py): a 2xx within webhook_timeout seconds is
    # delivered; a failed attempt is retried after webhook_backoff_base * 2^(n-1)
    # seconds (at most webhook_backoff_max, with jitter); an endpoint is
    # disabled when one event has failed webhook_max_attempts times in a row or
    # for webhook_retry_hours.
    webhook_timeout: PositiveFloat = 10.0
    webhook_connect_timeout: PositiveFloat = 5.0  # resolving and connecting, within the above
    # Longest wait a receiver's Retry-After (on 429 or 503) is honoured for.
    webhook_retry_after_max: PositiveFloat = 3600.0
    # Networks webhooks may reach although they are not globally routable
    # (comma-separated CIDRs: an on-premises receiver, a test's loopback one).
    webhook_allow_networks: str = ""
    webhook_retry_hours: PositiveFloat = 24.0
    webhook_max_attempts: Positive = 40
    webhook_backoff_base: PositiveFloat = 5.0
    webhook_backoff_max: PositiveFloat = 3600.0
    webhook_concurrency: Positive = 16  # POSTs in flight per worker
    # "workers": each serve worker delivers (yielding to its claims);
    # "separate": serve workers deliver nothing, `flashsale deliver` does.
    webhook_delivery: WebhookDelivery = WebhookDelivery.WORKERS
    # While a serve worker has claims in flight, each of its delivery streams
    # waits this long per event it delivered (a batch: per event in it), so
    # batches yield as much as single events (they catch up when claims calm).
    webhook_busy_pause: NonNegativeFloat = 0.05
    # Events an endpoint may be behind before it is disabled (read the feed).
    webhook_backlog_max: Positive = 100_000
    # Events per delivery: 1 sends each event alone (the single-event body);
    # more sends a batch of a coupon's next events, in seq order, in one POST
    # of at most webhook_batch_bytes (docs/webhooks.md, "Batches").
    webhook_batch_max: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1
    webhook_batch_bytes: Annotated[int, msgspec.Meta(ge=1024, le=8 << 20)] = 256 << 10
    # `flashsale deliver` lowers its own CPU priority by this much (os.nice),
    # so on a machine it shares with serve workers the claims go first.
    webhook_deliver_nice: Annotated[int, msgspec.Meta(ge=0, le=19)] = 10
    bench_routes: bool = False  # /bench/* endpoints, for `flashsale bench` only

    @property
    def uses_embedded_database(self) -> bool:
        """No server named: the service brings its own PostgreSQL."""
        return self.database_url is None and self.db_host is None

    def migration_dsn(self) -> str:
        """Where start-up creates the database and migrates: MIGRATION_DATABASE_URL
        when set, else the serving URL."""
        return self.migration_database_url or self.dsn()

    def dsn(self) -> str:
        """Connection URL: DATABASE_URL wins over the DB_* variables."""
        if self.database_url:
            return self.database_url
        user = quote(self.db_user, safe="")
        password = quote(self.db_password, safe="")
        # DB_HOST may list several hosts ("db1,db2"), each on DB_PORT.
        hosts = ",".join(
            f"{host.strip()}:{self.db_port}" for host in (self.db_host or "localhost").split(",")
        )
        return (
            f"postgresql://{user}:{password}@{hosts}/"
            f"{quote(self.db_name, safe='')}?sslmode={self.db_sslmode}"
        )


# Environment variable for each setting. The original's names come first.
ENVIRONMENT = {
    "app_host": "APP_HOST",
    "app_port": "APP_PORT",
    "workers": "WEB_WORKERS",
    "database_url": "DATABASE_URL",
    "migration_database_url": "MIGRATION_DATABASE_URL",
    "db_host": "DB_HOST",
    "db_port": "DB_PORT",
    "db_user": "DB_USER",
    "db_password": "DB_PASSWORD",
    "db_name": "DB_NAME",
    "db_sslmode": "DB_SSLMODE",
    "data_dir": "FLASHSALE_DATA_DIR",
    "claim_strategy": "CLAIM_STRATEGY",
    "claim_batch_max": "CLAIM_BATCH_MAX",
    "claim_queue_max": "CLAIM_QUEUE_MAX",
    "db_pool_min": "DB_POOL_MIN",
    "db_pool_max": "DB_POOL_MAX",
    "db_acquire_timeout": "DB_ACQUIRE_TIMEOUT",
    "db_statement_timeout": "DB_STATEMENT_TIMEOUT",
    "db_statement_cache_size": "DB_STATEMENT_CACHE_SIZE",
    "request_timeout": "REQUEST_TIMEOUT",
    "shutdown_timeout": "SHUTDOWN_TIMEOUT",
    "idempotency_ttl": "IDEMPOTENCY_TTL",
    "admin_token": "ADMIN_TOKEN",
    "log_level": "LOG_LEVEL",
    "log_access": "LOG_ACCESS",
    "webhook_timeout": "WEBHOOK_TIMEOUT",
    "webhook_connect_timeout": "WEBHOOK_CONNECT_TIMEOUT",
    "webhook_retry_after_max": "WEBHOOK_RETRY_AFTER_MAX",
    "webhook_allow_networks": "WEBHOOK_ALLOW_NETWORKS",
    "webhook_retry_hours": "WEBHOOK_RETRY_HOURS",
    "webhook_max_attempts": "WEBHOOK_MAX_ATTEMPTS",
    "webhook_backoff_base": "WEBHOOK_BACKOFF_BASE",
    "webhook_backoff_max": "WEBHOOK_BACKOFF_MAX",
    "webhook_concurrency": "WEBHOOK_CONCURRENCY",
    "webhook_delivery": "WEBHOOK_DELIVERY",
    "webhook_busy_pause": "WEBHOOK_BUSY_PAUSE",
    "webhook_backlog_max": "WEBHOOK_BACKLOG_MAX",
    "webhook_batch_max": "WEBHOOK_BATCH_MAX",
    "webhook_batch_bytes": "WEBHOOK_BATCH_BYTES",
    "webhook_deliver_nice": "WEBHOOK_DELIVER_NICE",
    "bench_routes": "FLASHSALE_BENCH_ROUTES",
}


class SettingsError(ValueError):
    """A variable is set to something the service cannot use."""


def load_settings(environ: Mapping[str, str] | None = None, /, **overrides: object) -> Settings:
    """Settings from the environment; ``overrides`` (e.g. CLI options) win."""
    env = os.environ if environ is None else environ
    raw: dict[str, object] = {
        field: env[var] for field, var in ENVIRONMENT.items() if env.get(var, "") != ""
    }
    raw.update({key: value for key, value in overrides.items() if value is not None})
    try:
        settings = msgspec.convert(raw, Settings, strict=False, dec_hook=_decode_path)
    except msgspec.ValidationError as error:
        raise SettingsError(_name_variable(str(error))) from None
    if settings.db_pool_min > settings.db_pool_max:
        raise SettingsError("DB_POOL_MIN must not exceed DB_POOL_MAX")
    _check_networks(settings.webhook_allow_networks)
    return settings


def _check_networks(cidrs: str) -> None:
    for cidr in filter(None, (part.strip() for part in cidrs.split(","))):
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise SettingsError(f"WEBHOOK_ALLOW_NETWORKS: {cidr!r} is not a CIDR") from None


def _decode_path(kind: type, value: object) -> object:
    """msgspec has no built-in conversion to Path."""
    if kind is Path and isinstance(value, str | Path):
        return Path(value)
    raise NotImplementedError(f"cannot convert {value!r} to {kind}")


def _name_variable(message: str) -> str:
    """Point at the environment variable rather than the field name."""
    for field, var in ENVIRONMENT.items():
        message = message.replace(f"`$.{field}`", var)
    return message


def redact_dsn(dsn: str) -> str:
    """The URL with any password replaced, fit for a log line."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.rsplit("@", 1)
    userinfo = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{userinfo}:***@{netloc[1]}"))
