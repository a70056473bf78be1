"""Claims sent continuously while something breaks, each reply recorded with
its latency; connection errors are recorded too, never raised."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp


@dataclass(frozen=True)
class Sent:
    user: str
    started: float  # time.monotonic()
    latency: float
    status: int | None  # None: no HTTP reply (refused, reset)
    error: str  # the body's error code, or the exception's class name

    @property
    def outcome(self) -> str:
        return "ok" if self.status == 200 else f"{self.status} {self.error}"


@dataclass
class Traffic:
    """Everything sent so far; ``winners`` are the users who got a 200."""

    sent: list[Sent] = field(default_factory=list)

    @property
    def winners(self) -> set[str]:
        return {s.user for s in self.sent if s.status == 200}

    def outcomes(self) -> Counter[str]:
        return Counter(s.outcome for s in self.sent)

    def between(self, start: float, end: float) -> list[Sent]:
        return [s for s in self.sent if start <= s.started and s.started + s.latency <= end]


# A bounded wait (a timeout, a deadline, a refused connection) is answered
# long before a client gives up (session's 30 s): checked with this much
# room, since a loaded machine stretches every step. How fast it is exactly
# is the bench's business, never a test's.
PROMPT = 15.0


def session(connections: int, timeout: float = 30) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections),
        timeout=aiohttp.ClientTimeout(total=timeout),
    )


async def claim_once(
    http: aiohttp.ClientSession, base_url: str, coupon: str, user: str, traffic: Traffic
) -> None:
    started = time.monotonic()
    status: int | None = None
    try:
        async with http.post(
            f"{base_url}/api/coupons/claim", json={"user_id": user, "coupon_name": coupon}
        ) as response:
            status = response.status
            body = await response.json(content_type=None)
            error = "" if status == 200 else str(body.get("error"))
    except (TimeoutError, aiohttp.ClientError) as failure:
        error = type(failure).__name__
    traffic.sent.append(Sent(user, started, time.monotonic() - started, status, error))


async def claim_loop(
    base_url: str, coupon: str, traffic: Traffic, stop: asyncio.Event, *, clients: int, tag: str
) -> None:
    """``clients`` users at a time, each claim a new user, until ``stop``."""
    async with session(clients) as http:

        async def client(number: int) -> None:
            sequence = 0
            while not stop.is_set():
                sequence += 1
                user = f"{tag}-{number}-{sequence}"
                await claim_once(http, base_url, coupon, user, traffic)
                if traffic.sent[-1].status != 200:
                    await asyncio.sleep(0.05)  # as a client would back off, not spin

        await asyncio.gather(*(client(n) for n in range(clients)))


async def wait_until(condition: Callable[[], bool], limit: float, step: float = 0.01) -> bool:
    """Polls ``condition`` for up to ``limit`` seconds; whether it came true."""
    for _ in range(int(limit / step)):
        if condition():
            return True
        await asyncio.sleep(step)
    return condition()


async def first_success_after(traffic: Traffic, moment: float, limit: float) -> float | None:
    """When the first claim sent after ``moment`` was answered 200."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        done = [
            s.started + s.latency for s in traffic.sent if s.status == 200 and s.started >= moment
        ]
        if done:
            return min(done)
        await asyncio.sleep(0.05)
    return None
