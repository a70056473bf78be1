"""Webhook POSTs over httpcore: one connection pool per deliverer, whose
connections go only to checked addresses (delivery/destinations.py).

A delivery is a 2xx within the timeout; anything else (another status, a
redirect, a refused destination, a refused connection, a timeout, a TLS
failure) is a failed attempt whose ``error`` names what happened. The error
text is built here from the status, the refusal or the exception's type,
never from the request: it holds neither the secret, the signature nor a
URL. httpcore (not httpx) sends: nothing logs the URL at INFO.

Bounded: the connection and the whole exchange have timeouts, and at most
``MAX_ANSWER_BYTES`` of an answer's body are read (the connection is closed
on the rest), so a receiver answering gigabytes costs nothing."""

from __future__ import annotations

import asyncio
import ssl
from email.utils import parsedate_to_datetime
from time import time

import httpcore

from flashsale.delivery.destinations import (
    DestinationRefused,
    Destinations,
    PinnedBackend,
    url_origin,
)
from flashsale.service.webhook_ports import PostOutcome

_USER_AGENT = b"flashsale-webhooks/1"
MAX_ANSWER_BYTES = 4096
_NETWORK_FAILURES = (httpcore.NetworkError, httpcore.ProtocolError, OSError, ssl.SSLError)


class HttpSender:
    def __init__(
        self,
        destinations: Destinations,
        *,
        timeout: float,
        connect_timeout: float,
        retry_after_max: float,
        backend: httpcore.AsyncNetworkBackend | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._timeout = timeout
        self._retry_after_max = retry_after_max
        self._timeouts = {"connect": min(connect_timeout, timeout), "read": timeout,
                          "write": timeout, "pool": timeout}  # fmt: skip
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=tls or ssl.create_default_context(),
            network_backend=PinnedBackend(destinations, backend),
            max_keepalive_connections=32,
        )
        self.answer_bytes_read = 0  # all answers' body bytes read (tests, bounds)

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> PostOutcome:
        try:
            url_origin(url)  # credentials are refused before anything else
            async with asyncio.timeout(self._timeout):
                return await self._exchange(url, body, headers)
        except DestinationRefused as refused:
            return PostOutcome(False, f"refused: {refused.reason}")
        except (TimeoutError, httpcore.TimeoutException):
            return PostOutcome(False, f"no answer within {self._timeout:g} s")
        except (*_NETWORK_FAILURES, httpcore.UnsupportedProtocol) as error:
            return PostOutcome(False, f"request failed: {type(error).__name__}")

    async def _exchange(self, url: str, body: bytes, headers: dict[str, str]) -> PostOutcome:
        sent = [(b"User-Agent", _USER_AGENT), (b"Content-Type", b"application/json")]
        sent += [(name.encode(), value.encode()) for name, value in headers.items()]
        async with self._pool.stream(
            "POST", url, headers=sent, content=body, extensions={"timeout": self._timeouts}
        ) as response:
            await self._read_some(response)
            return self._outcome(response)

    async def _read_some(self, response: httpcore.Response) -> None:
        """Up to MAX_ANSWER_BYTES of the body, then stop: leaving the stream
        early closes the connection (httpcore keeps only finished ones)."""
        read = 0
        async for chunk in response.aiter_stream():
            read += len(chunk)
            if read >= MAX_ANSWER_BYTES:
                break
        self.answer_bytes_read += read

    def _outcome(self, response: httpcore.Response) -> PostOutcome:
        status = response.status
        if 200 <= status < 300:
            return PostOutcome(True, None)
        if 300 <= status < 400:
            return PostOutcome(False, f"HTTP {status}: redirects are not followed")
        if status == 410:
            return PostOutcome(False, "HTTP 410: the endpoint is gone", gone=True)
        if status in (429, 503):
            wait = retry_after(_header(response, b"retry-after"), self._retry_after_max)
            return PostOutcome(False, f"HTTP {status}", retry_after=wait)
        return PostOutcome(False, f"HTTP {status}")

    async def close(self) -> None:
        await self._pool.aclose()


def _header(response: httpcore.Response, name: bytes) -> str | None:
    for key, value in response.headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def retry_after(value: str | None, most: float) -> float | None:
    """Seconds a ``Retry-After`` asks for (delay-seconds or an HTTP-date),
    at most ``most``; None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), most)
    try:
        moment = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    return min(max(moment - time(), 0.0), most)
