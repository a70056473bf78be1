"""Per-client claim limits: a token bucket per end user (the ``sub`` of a
verified token) or, for anonymous callers, per client address; the operator
and the shop's backend are never limited (the backend claims for everyone
from one address). Past it a claim is answered 429 ``rate_limited`` with
``Retry-After``, before its body is read.

Per worker, in memory: with W workers on N instances one client may claim up
to W x N x CLAIM_RATE per second when its connections land on different
workers; one keep-alive connection stays on one worker and gets CLAIM_RATE
(docs/operations.md#front-door). The table holds at most CLAIM_RATE_CLIENTS
buckets (bounded memory); past it, buckets that have refilled are dropped
first (a full bucket is what a new client gets anyway, so nothing is lost),
then the oldest, whose clients start afresh with a full burst."""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import msgspec
from litestar.datastructures import State
from litestar.status_codes import HTTP_429_TOO_MANY_REQUESTS
from litestar.types import HTTPScope

from flashsale.config import Settings, parse_networks
from flashsale.domain import ANONYMOUS, CallerKind
from flashsale.http.auth import Unauthorized, anonymous, caller_of
from flashsale.http.schemas import ErrorResponse
from flashsale.metrics import count_cut

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Answer = tuple[int, list[tuple[bytes, bytes]], bytes]

_AUTHORIZATION = b"authorization"
_FORWARDED_FOR = b"x-forwarded-for"
_ENCODER = msgspec.json.Encoder()
# Past a full table, sweep it down to this share so the next sweep is far off.
_SWEEP_TO = 7 / 8


class TokenBuckets:
    """``rate`` tokens a second per key, at most ``burst`` saved up, for at
    most ``size`` keys."""

    def __init__(
        self, rate: float, burst: int, size: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._size = size
        self._clock = clock
        # key -> [tokens, when they were counted]; dicts keep insertion order,
        # so the first keys are the oldest.
        self._buckets: dict[str, list[float]] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str) -> float:
        """0 if ``key`` may go now (one token taken), else the seconds until
        it may."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._size:
                self._sweep(now)
            self._buckets[key] = [self._burst - 1, now]
            return 0.0
        tokens = bucket[0] + (now - bucket[1]) * self._rate
        if tokens > self._burst:
            tokens = self._burst
        bucket[1] = now
        if tokens >= 1:
            bucket[0] = tokens - 1
            return 0.0
        bucket[0] = tokens
        return (1 - tokens) / self._rate

    def _sweep(self, now: float) -> None:
        """Drop refilled buckets, then the oldest, down to 7/8 of the size."""
        refill = self._burst / self._rate
        full = [key for key, (_, at) in self._buckets.items() if now - at >= refill]
        for key in full:
            del self._buckets[key]
        excess = len(self._buckets) - int(self._size * _SWEEP_TO)
        for key in list(self._buckets)[: max(excess, 0)]:
            del self._buckets[key]


@dataclass(frozen=True, slots=True)
class TrustedProxies:
    """Peers whose X-Forwarded-For names the client (TRUSTED_PROXIES)."""

    networks: tuple[Network, ...]

    def trusts(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.networks)

    def client_address(self, peer: str, forwarded: Iterable[bytes]) -> str:
        """The client: the direct peer unless it is trusted; then the
        rightmost X-Forwarded-For entry that is not a trusted proxy (entries
        left of it were written by the client and prove nothing)."""
        if not self.networks or not self.trusts(peer):
            return peer
        hops = [hop.strip() for line in forwarded for hop in line.decode("latin-1").split(",")]
        for hop in reversed(hops):
            if not self.trusts(hop):
                return hop if is_address(hop) else peer
        return hops[0] if hops and is_address(hops[0]) else peer


def is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


_PROXIES_KEY = "trusted_proxies"


def configure_proxies(state: State, settings: Settings) -> None:
    """TRUSTED_PROXIES on the app's state, for client_address_of."""
    state[_PROXIES_KEY] = TrustedProxies(tuple(parse_networks(settings.trusted_proxies)))


def client_address_of(state: State, scope: HTTPScope) -> str:
    """The client's address: the direct peer, or X-Forwarded-For's client
    when the peer is a trusted proxy (TrustedProxies.client_address)."""
    client = scope.get("client")
    peer = client[0] if client else "unknown"
    proxies: TrustedProxies | None = state.get(_PROXIES_KEY)
    if proxies is None or not proxies.networks:
        return peer
    forwarded = [value for name, value in scope["headers"] if name == _FORWARDED_FOR]
    return proxies.client_address(peer, forwarded) if forwarded else peer


class ClaimLimits:
    """Whether a claim may go on now: None, or the 429 to answer instead."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self._buckets = TokenBuckets(
            settings.claim_rate, settings.claim_burst, settings.claim_rate_clients, clock
        )
        self._proxies = TrustedProxies(tuple(parse_networks(settings.trusted_proxies)))

    def refused(self, scope: HTTPScope, state: State) -> Answer | None:
        key = self._key(scope, state)
        if key is None:
            return None
        wait = self._buckets.take(key)
        if wait == 0:
            return None
        count_cut("rate_limited")
        return _rate_limited(wait)

    def _key(self, scope: HTTPScope, state: State) -> str | None:
        """An end user's ``user:<subject>``, else the client's address; None:
        not limited. One pass over the headers: this runs on every claim."""
        authorization: bytes | None = None
        forwarded: list[bytes] = []
        for name, value in scope["headers"]:
            if name == _AUTHORIZATION:
                authorization = value
            elif name == _FORWARDED_FOR:
                forwarded.append(value)
        if authorization is not None:
            try:
                caller = caller_of(state, authorization.decode("latin-1"))
            except Unauthorized:  # no credential here; the claim answers the 401
                caller = ANONYMOUS
            # The open admin routes' operator (no credential) is limited too.
            if caller.privileged and not anonymous(caller):
                return None
            if caller.kind is CallerKind.USER and caller.subject is not None:
                return "user:" + caller.subject  # an address never starts so
        client = scope.get("client")
        peer = client[0] if client else ""
        if forwarded and self._proxies.networks:
            return self._proxies.client_address(peer, forwarded)
        return peer


def _rate_limited(wait: float) -> Answer:
    seconds = max(1, math.ceil(wait))
    body = ErrorResponse(
        error="rate_limited",
        message=f"too many claims from this client; retry in {seconds} s",
    )
    headers = [(b"content-type", b"application/json"), (b"retry-after", str(seconds).encode())]
    return HTTP_429_TOO_MANY_REQUESTS, headers, _ENCODER.encode(body)
