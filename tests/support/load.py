"""Concurrent HTTP load for tests. aiohttp, because httpx's connection pool
slows to a crawl with hundreds of connections (30 s vs 0.4 s for 1,000 posts)."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from typing import Any

import aiohttp


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any
    headers: dict[str, str]

    @property
    def outcome(self) -> str:
        return "ok" if self.status == 200 else f"{self.status} {self.body.get('error')}"


async def post_all(
    requests: list[tuple[str, dict[str, Any]]], *, connections: int = 500
) -> list[Reply]:
    """POST every (url, json) at once over up to ``connections`` sockets."""
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(url: str, body: dict[str, Any]) -> Reply:
            async with session.post(url, json=body) as response:
                body = await response.json(content_type=None)
                return Reply(response.status, body, dict(response.headers))

        return list(await asyncio.gather(*(one(url, body) for url, body in requests)))


def claim_requests(
    base_urls: list[str], coupon: str, users: list[str]
) -> list[tuple[str, dict[str, Any]]]:
    """Every user's claim, spread round-robin over the servers."""
    return [
        (
            f"{base_urls[i % len(base_urls)]}/api/coupons/claim",
            {"user_id": user, "coupon_name": coupon},
        )
        for i, user in enumerate(users)
    ]


async def claim_all(base_urls: list[str], coupon: str, users: list[str]) -> list[Reply]:
    """Every user's claim at once, spread round-robin over the servers."""
    return await post_all(claim_requests(base_urls, coupon, users))


@dataclass(frozen=True)
class Answered:
    """Each request's final reply, and which of them were sent again."""

    replies: list[Reply]
    retried: set[int]


async def post_all_answered(
    requests: list[tuple[str, dict[str, Any]]], *, rounds: int = 20
) -> Answered:
    """post_all, then each request answered 503 sent again, as a client told
    to retry would, until every one has another answer (at most ``rounds``
    times). A loaded machine makes the service shed load (pool acquisition
    times out: 503 with Retry-After); what a rush decides must not depend on
    how much it shed."""
    replies = await post_all(requests)
    retried: set[int] = set()
    for _ in range(rounds):
        again = [i for i, reply in enumerate(replies) if reply.status == 503]
        if not again:
            break
        retried.update(again)
        await asyncio.sleep(0.5)
        for i, reply in zip(again, await post_all([requests[i] for i in again]), strict=True):
            replies[i] = reply
    return Answered(replies, retried)


def outcomes(replies: list[Reply]) -> Counter[str]:
    return Counter(reply.outcome for reply in replies)


async def create_coupon(base_url: str, name: str, amount: int) -> None:
    [reply] = await post_all([(f"{base_url}/api/coupons", {"name": name, "amount": amount})])
    assert reply.status == 201, reply


def granted(users: list[str], answered: Answered) -> set[str]:
    """The users whose claim was granted: answered 200, or already_claimed
    when sent again (the 503 came after the first attempt committed)."""
    return {
        user
        for i, (user, reply) in enumerate(zip(users, answered.replies, strict=True))
        if reply.status == 200 or (i in answered.retried and reply.outcome == "409 already_claimed")
    }
