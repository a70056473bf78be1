"""JWT_JWKS_URL's keys, fetched beside the requests, never inside one.

One task per worker fetches the set at start-up, then every
JWT_JWKS_REFRESH seconds, and sooner when a token names an unknown ``kid``
(http/end_users.py asks; the asks are coalesced and at least
JWT_JWKS_MIN_INTERVAL apart, so a flood of invented kids costs one fetch
per interval). Each fetch is bounded in time (FETCH_SECONDS, all of it) and
in size (MAX_BYTES); a failed fetch keeps the keys already held."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt

from flashsale.config import Settings
from flashsale.http.end_users import EndUsers
from flashsale.logs import get_logger

log = get_logger("flashsale.auth")

FETCH_SECONDS = 5.0
MAX_BYTES = 1 << 20  # a key set is a few KB; more is a mistake or an attack


class JwksRefresher:
    def __init__(self, settings: Settings, users: EndUsers) -> None:
        assert settings.jwt_jwks_url is not None
        self._url = settings.jwt_jwks_url
        self._every = settings.jwt_jwks_refresh
        self._min_interval = settings.jwt_jwks_min_interval
        self._users = users
        self._asked = asyncio.Event()
        self._last = -float("inf")
        users.set_unknown_kid_hook(self._asked.set)

    async def refresh(self) -> bool:
        """One fetch; True when new keys are in use."""
        self._last = time.monotonic()
        self._asked.clear()
        try:
            async with asyncio.timeout(FETCH_SECONDS):
                keys = parse_jwks(await fetch(self._url))
        except (OSError, TimeoutError, httpx.HTTPError, ValueError, jwt.PyJWTError) as error:
            log.warning("JWT_JWKS_URL: fetch failed, keeping the keys held", error=str(error)[:200])
            return False
        self._users.use_keys(keys)
        return True

    async def run(self) -> None:
        """Refresh on schedule and on request, until cancelled."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._every):
                    await self._asked.wait()
            await asyncio.sleep(max(0.0, self._last + self._min_interval - time.monotonic()))
            await self.refresh()


@contextlib.asynccontextmanager
async def refreshing(settings: Settings, users: EndUsers) -> AsyncIterator[None]:
    """The worker's refresher: a first fetch (bounded) before serving, then
    the task, cancelled at shutdown."""
    if settings.jwt_jwks_url is None:
        yield
        return
    refresher = JwksRefresher(settings, users)
    await refresher.refresh()
    task = asyncio.create_task(refresher.run(), name="jwks-refresh")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def fetch(url: str) -> bytes:
    async with (
        httpx.AsyncClient(timeout=FETCH_SECONDS, follow_redirects=False) as client,
        client.stream("GET", url, headers={"accept": "application/json"}) as response,
    ):
        response.raise_for_status()
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > MAX_BYTES:
                raise ValueError(f"the key set is larger than {MAX_BYTES} bytes")
        return bytes(body)


def parse_jwks(body: bytes) -> dict[str | None, Any]:
    """kid -> PyJWK for every usable key of a JWKS document."""
    document = json.loads(body)
    keys = jwt.PyJWKSet.from_dict(document).keys
    return {key.key_id: key for key in keys}
