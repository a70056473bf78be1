"""Webhook POSTs over httpx: one client (one connection pool) per worker.

A delivery is a 2xx within the timeout; anything else (another status, a
refused connection, a timeout, a TLS failure) is a failed attempt whose
``error`` names what happened for ``GET /api/webhooks``. The error text is
built here from the status or the exception's type, never from the request:
it can hold neither the secret nor the signature."""

from __future__ import annotations

import asyncio

import httpx

from flashsale.service.ports import PostOutcome

_USER_AGENT = "flashsale-webhooks/1"


class HttpxSender:
    def __init__(self, timeout: float) -> None:
        # One timeout for connect, each read and the pool wait, and a bound on
        # the whole exchange in post(): "within 10 seconds" means the whole POST.
        self._timeout = timeout
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,  # a redirect is not a 2xx
            headers={"User-Agent": _USER_AGENT},
        )

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> PostOutcome:
        try:
            async with asyncio.timeout(self._timeout):
                response = await self._client.post(
                    url, content=body, headers={"Content-Type": "application/json", **headers}
                )
        except (TimeoutError, httpx.TimeoutException):
            return PostOutcome(False, f"no answer within {self._timeout:g} s")
        except (httpx.HTTPError, httpx.InvalidURL, OSError) as error:
            return PostOutcome(False, f"request failed: {type(error).__name__}")
        if 200 <= response.status_code < 300:
            return PostOutcome(True, None)
        return PostOutcome(False, f"HTTP {response.status_code}")

    async def close(self) -> None:
        await self._client.aclose()
