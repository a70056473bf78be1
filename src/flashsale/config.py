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


class ClaimAuth(StrEnum):
    """Who may claim for whom (docs/access.md)."""

    OPEN = "open"  # the original contract: anyone, for any user_id
    USER = "user"  # an end user's JWT for its sub; backend and operator for anyone
    BACKEND = "backend"  # only the backend's and the operator's tokens


class WebhookDelivery(StrEnum):
    WORKERS = "workers"
    SEPARATE = "separate"


Positive = Annotated[int, msgspec.Meta(ge=1)]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
NonNegative = Annotated[int, msgspec.Meta(ge=0)]
NonNegativeFloat = Annotated[float, msgspec.Meta(ge=0)]
Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    # Loopback unless told otherwise: a server reachable from the network is
    # an explicit choice (the Dockerfile makes it: 0.0.0.0).
    app_host: str = "127.0.0.1"
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
    # Claim lanes per worker (claims/lanes.py): a coupon's claims go in one,
    # and one batch per lane, across its coupons, is in flight at a time.
    claim_lanes: Positive = 1
    # Most claims of one coupon in a batch that other coupons wait for.
    claim_coupon_share: Positive = 250
    db_pool_min: Positive = 2
    db_pool_max: Positive = 10
    db_acquire_timeout: PositiveFloat = 2.0
    db_statement_timeout: PositiveFloat = 5.0
    # asyncpg's prepared-statement cache per connection (its default, 100).
    # 0 behind a transaction-mode pooler that does not track prepared
    # statements (PgBouncer < 1.21, or without max_prepared_statements).
    db_statement_cache_size: NonNegative = 100
    request_timeout: PositiveFloat = 10.0  # whole request, queues included, then 503
    # Bounds on the client (http/bounds.py, docs/operations.md "Limits"): a
    # request's body must arrive within body_timeout seconds of its headers;
    # each write of a response must drain within send_timeout; an answer
    # must flow at min_send_rate bytes/s on average (after send_timeout's
    # grace) and end within response_timeout; past max_requests requests in
    # flight a worker answers 503.
    body_timeout: PositiveFloat = 10.0
    send_timeout: PositiveFloat = 10.0
    min_send_rate: Positive = 65_536
    response_timeout: PositiveFloat = 300.0
    max_requests: Positive = 1024
    # Event streams (/api/events/stream, /dashboard/events) open per worker,
    # then 503; a stream with nothing new for stream_idle_timeout seconds ends
    # (the client reconnects, resuming with Last-Event-ID).
    max_streams: Positive = 500
    stream_idle_timeout: PositiveFloat = 60.0
    # Bytes of large coupon reads a worker may spool to disk at once, then 503.
    spool_max_bytes: Positive = 1 << 30
    # Seconds a worker may take to finish its accepted requests after SIGTERM
    # before Granian kills it (workers_kill_timeout).
    shutdown_timeout: Positive = 8
    # Seconds an Idempotency-Key's answer is kept (the contract: at least a day).
    idempotency_ttl: Annotated[int, msgspec.Meta(ge=86_400)] = 86_400
    # Access (docs/access.md). Token lists: comma-separated, each entry
    # "name:token" or a bare token (named admin-1, backend-1, ... by position).
    # Keys one caller may store per worker per IDEMPOTENCY_TTL window: an end
    # user (its sub), an anonymous client (its address); the operator's and
    # the backend's tokens (each by name) have their own, larger quota.
    idempotency_keys_per_identity: Positive = 10_000
    idempotency_keys_per_credential: Positive = 1_000_000
    admin_token: str | None = None
    backend_token: str | None = None
    metrics_token: str | None = None
    admin_open: bool = False  # admin routes without ADMIN_TOKEN beyond loopback
    claim_auth: ClaimAuth = ClaimAuth.OPEN
    # Anonymous reads of a user's claims in open mode; unset: only on loopback.
    open_claim_reads: bool | None = None
    hide_claimers: bool = False  # claimed_by and a coupon's claims hidden from anonymous readers
    jwt_jwks_url: str | None = None
    jwt_public_key_file: Path | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_algorithms: str = "RS256,PS256,ES256,EdDSA"
    jwt_hmac_secret: str | None = None  # HS256 claim tokens minted by the shop's backend
    jwt_cache_max: Positive = 10_000  # verified tokens remembered per worker
    jwt_jwks_refresh: PositiveFloat = 300.0  # seconds between two scheduled fetches
    jwt_jwks_min_interval: NonNegativeFloat = 30.0  # at least this between two fetches
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
    # Claims per second per client (an end user's subject, else the client's
    # address) per worker, with claim_burst saved up; 0: no limit
    # (http/limits.py). The deploy profiles set it; `flashsale serve` does not.
    claim_rate: NonNegativeFloat = 0.0
    claim_burst: Positive = 10
    claim_rate_clients: Positive = 100_000  # buckets kept per worker (memory)
    # Peers (comma-separated CIDRs) whose X-Forwarded-For names the client.
    trusted_proxies: str = ""
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


# Environment variable for each setting: its name in capitals, but for the
# original's names and a few that would be too vague alone.
_VARIABLE_NAMES = {
    "workers": "WEB_WORKERS",
    "data_dir": "FLASHSALE_DATA_DIR",
    "max_requests": "WORKER_MAX_REQUESTS",
    "max_streams": "WORKER_MAX_STREAMS",
    "bench_routes": "FLASHSALE_BENCH_ROUTES",
}
ENVIRONMENT = {
    field: _VARIABLE_NAMES.get(field, field.upper()) for field in Settings.__struct_fields__
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
    _check_networks("WEBHOOK_ALLOW_NETWORKS", settings.webhook_allow_networks)
    _check_networks("TRUSTED_PROXIES", settings.trusted_proxies)
    _check_access(settings)
    return settings


ASYMMETRIC = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


def token_entries(text: str | None, kind: str) -> list[tuple[str, str]]:
    """(name, token) for each entry of a token list (ADMIN_TOKEN, ...):
    ``name:token``, or a bare token named ``<kind>-<position>``."""
    entries = filter(None, (entry.strip() for entry in (text or "").split(",")))
    named = []
    for position, entry in enumerate(entries, start=1):
        name, colon, secret = entry.partition(":")
        if not colon or not name.strip() or not secret.strip():
            name, secret = f"{kind}-{position}", entry
        if name.strip() == "admin-open":
            raise SettingsError(
                "'admin-open' is reserved (docs/access.md): name the token otherwise"
            )
        named.append((name.strip(), secret.strip()))
    return named


def jwt_algorithms(settings: Settings) -> frozenset[str]:
    """JWT_ALGORITHMS as a set (asymmetric ones only: checked at load)."""
    return frozenset(filter(None, (a.strip() for a in settings.jwt_algorithms.split(","))))


def verifies_jwts(settings: Settings) -> bool:
    """Whether end users' tokens can be verified at all."""
    keys = settings.jwt_jwks_url or settings.jwt_public_key_file or settings.jwt_hmac_secret
    return keys is not None


def _check_access(settings: Settings) -> None:
    # HS256 only with JWT_HMAC_SECRET: an HMAC algorithm in the list would let
    # a token be checked with a public key as its secret (a forgery anyone can make).
    refused = jwt_algorithms(settings) - ASYMMETRIC
    if refused:
        raise SettingsError(
            f"JWT_ALGORITHMS: {', '.join(sorted(refused))} not accepted "
            "(asymmetric algorithms only; HS256 comes with JWT_HMAC_SECRET)"
        )
    for text, kind in (
        (settings.admin_token, "admin"),
        (settings.backend_token, "backend"),
        (settings.metrics_token, "metrics"),
    ):
        token_entries(text, kind)  # refuses a reserved name
    if settings.jwt_hmac_secret is not None and len(settings.jwt_hmac_secret.encode()) < 32:
        raise SettingsError("JWT_HMAC_SECRET must be at least 32 bytes (RFC 7518 3.2)")
    if settings.jwt_jwks_url and settings.jwt_public_key_file:
        raise SettingsError("set JWT_JWKS_URL or JWT_PUBLIC_KEY_FILE, not both")
    if verifies_jwts(settings) and not (settings.jwt_issuer and settings.jwt_audience):
        raise SettingsError("end users' tokens need JWT_ISSUER and JWT_AUDIENCE")
    if settings.claim_auth is ClaimAuth.USER and not verifies_jwts(settings):
        raise SettingsError(
            "CLAIM_AUTH=user needs JWT_JWKS_URL, JWT_PUBLIC_KEY_FILE or JWT_HMAC_SECRET"
        )


def parse_networks(cidrs: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Comma-separated CIDRs (a bare address is its own /32 or /128)."""
    parts = filter(None, (part.strip() for part in cidrs.split(",")))
    return [ipaddress.ip_network(cidr, strict=False) for cidr in parts]


def _check_networks(variable: str, cidrs: str) -> None:
    for cidr in filter(None, (part.strip() for part in cidrs.split(","))):
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise SettingsError(f"{variable}: {cidr!r} is not a CIDR") from None


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
