"""A webhook endpoint on a loopback port of the test process (aiohttp): it
answers by a script (fail the first attempts with 500, stall one past the
sender's timeout, be down, answer a status or a long body), verifies every
request as a receiver would (the reference ``standardwebhooks`` library, and
the deprecated Flashsale-Signature), and keeps what it was sent, in arrival
order."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from flashsale.bench.server import free_port
from flashsale.service.signing import (
    ID_HEADER,
    LEGACY_SIGNATURE_HEADER,
    SIGNATURE_HEADER,
    secret_key,
    verify_legacy,
)

# whsec_ + base64 of 32 bytes: the form the service requires.
TEST_SECRET = "whsec_" + base64.b64encode(b"flashsale-test-secret-0123456789").decode()


@dataclass(frozen=True)
class Arrival:
    """One request as the receiver saw it, and how it answered."""

    event_id: str  # webhook-id
    body: dict[str, Any]
    verified: bool  # by standardwebhooks, with the receiver's secret at the time
    legacy_verified: bool  # the deprecated header, keyed with the same bytes
    status: int  # what it answered (0: stalled past the sender's timeout)
    at: float
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def signatures(self) -> int:
        return len(self.headers.get(SIGNATURE_HEADER, "").split())


@dataclass
class Receiver:
    secret: str
    fail_first: int = 0  # answer 500 to this many requests first
    stall_once: float = 0.0  # then hold one request this long before answering
    down: bool = False  # answer 503 to everything while set
    answer: int = 200  # what every other request is answered
    answer_headers: dict[str, str] = field(default_factory=dict)
    answer_bytes: int = 0  # a body this long (streamed) with each answer
    bytes_sent: int = 0  # how much of those bodies the sender took
    arrivals: list[Arrival] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    url: str = ""
    port: int = 0

    async def start(self, tls: ssl.SSLContext | None = None) -> str:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        self.port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=tls).start()
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}/hook"
        return self.url

    def url_at(self, host: str) -> str:
        """This receiver's URL with ``host`` in place of its address."""
        return self.url.replace("127.0.0.1", host, 1)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        status = self._decide()
        self.arrivals.append(
            Arrival(request.headers.get(ID_HEADER, ""), json.loads(body),
                    self._verified(body, request), self._legacy_verified(body, request),
                    status, time.monotonic(), dict(request.headers))
        )  # fmt: skip
        if status == 0:
            await asyncio.sleep(self.stall_once)
            return web.Response(status=200)
        if self.answer_bytes:
            return await self._stream(request, status)
        return web.Response(status=status, headers=self.answer_headers)

    async def _stream(self, request: web.Request, status: int) -> web.StreamResponse:
        """A long body, sent until it ends or the sender hangs up."""
        response = web.StreamResponse(status=status, headers=self.answer_headers)
        response.content_length = self.answer_bytes
        await response.prepare(request)
        chunk = b"x" * 65536
        try:
            while self.bytes_sent < self.answer_bytes:
                await response.write(chunk)
                self.bytes_sent += len(chunk)
        except (ConnectionError, RuntimeError):
            pass  # the sender stopped reading and closed
        return response

    def _verified(self, body: bytes, request: web.Request) -> bool:
        try:
            Webhook(self.secret).verify(body, dict(request.headers))
        except WebhookVerificationError:
            return False
        return True

    def _legacy_verified(self, body: bytes, request: web.Request) -> bool:
        header = request.headers.get(LEGACY_SIGNATURE_HEADER, "")
        return verify_legacy(secret_key(self.secret), body, header)

    def _decide(self) -> int:
        if self.down:
            return 503
        if self.fail_first > 0:
            self.fail_first -= 1
            return 500
        if self.stall_once > 0 and not any(a.status == 0 for a in self.arrivals):
            return 0
        return self.answer

    # What was delivered: answered 2xx in time.
    def delivered(self) -> list[Arrival]:
        return [arrival for arrival in self.arrivals if 200 <= arrival.status < 300]

    def delivered_ids(self) -> list[int]:
        return [arrival.body["id"] for arrival in self.delivered()]

    def seqs_by_coupon(self) -> dict[str, list[int]]:
        """Each coupon's delivered seqs in arrival order."""
        seqs: dict[str, list[int]] = {}
        for arrival in self.delivered():
            seqs.setdefault(arrival.body["coupon_name"], []).append(arrival.body["seq"])
        return seqs

    async def wait_for(self, count: int, within: float = 60) -> None:
        """Until ``count`` distinct events were delivered."""
        deadline = time.monotonic() + within
        while len(set(self.delivered_ids())) < count:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(set(self.delivered_ids()))} of {count} events delivered "
                    f"in {within} s; {len(self.arrivals)} requests"
                )
            await asyncio.sleep(0.05)

    async def wait_for_requests(self, count: int, within: float = 30) -> None:
        """Until ``count`` requests arrived, whatever they were answered."""
        deadline = time.monotonic() + within
        while len(self.arrivals) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.arrivals)} of {count} requests in {within} s")
            await asyncio.sleep(0.05)
