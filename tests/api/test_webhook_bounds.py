"""A receiver cannot make a delivery costly: a huge answer is read only up
to a few KiB (the connection is closed on the rest), a Retry-After on 429 or
503 is honoured up to WEBHOOK_RETRY_AFTER_MAX, and a 410 disables the
endpoint at once."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import pytest

from flashsale.delivery.addresses import AddressPolicy
from flashsale.delivery.destinations import Destinations
from flashsale.delivery.sender import MAX_ANSWER_BYTES, HttpSender, retry_after
from tests.support.api import create_coupon, in_process_client
from tests.support.network import Network
from tests.support.receiver import Receiver
from tests.support.webhooks import register, wait_for

ALLOW = {"WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8", "WEBHOOK_BACKOFF_BASE": "0.05"}
HUGE = 1 << 30  # 1 GiB offered


async def test_a_huge_answer_is_read_only_a_few_kib(network: Network, receiver: Receiver) -> None:
    receiver.answer_bytes = HUGE
    posts = loopback_sender()
    try:
        outcomes = [await posts.post(receiver.url, b"{}", {}) for _ in range(3)]
    finally:
        await posts.close()
    assert all(outcome.delivered for outcome in outcomes)
    # One network read (64 KiB) at most past the limit per answer, of 1 GiB each.
    assert posts.answer_bytes_read <= 3 * (MAX_ANSWER_BYTES + 65536)
    assert receiver.bytes_sent < 3 * (64 << 20)  # the rest stayed unsent: the sender hung up
    assert len(receiver.arrivals) == 3


async def test_a_redirect_is_a_failure_and_is_not_followed(
    network: Network, receiver: Receiver
) -> None:
    receiver.answer, receiver.answer_headers = 307, {"Location": "http://10.0.0.1/"}
    posts = loopback_sender()
    try:
        outcome = await posts.post(receiver.url, b"{}", {})
    finally:
        await posts.close()
    assert outcome.error == "HTTP 307: redirects are not followed"
    assert len(receiver.arrivals) == 1


def loopback_sender() -> HttpSender:
    return HttpSender(
        Destinations(AddressPolicy.configured("127.0.0.0/8")),
        timeout=30, connect_timeout=5, retry_after_max=60,
    )  # fmt: skip


async def test_a_410_disables_the_endpoint_at_once(
    network: Network, receiver: Receiver, database: str
) -> None:
    receiver.answer = 410
    async with in_process_client(database, **ALLOW) as client:
        await register(client, receiver.url)
        await create_coupon(client, "GONE", 5)
        listed = await wait_for(client, lambda h: h["status"] != "enabled")
    assert listed["disabled_reason"] == "the endpoint answered 410 Gone"
    assert listed["last_error"] == "HTTP 410: the endpoint is gone"
    assert len(receiver.arrivals) == 1


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_is_honoured_up_to_its_cap(
    network: Network, receiver: Receiver, database: str, db: asyncpg.Connection[Any], status: int
) -> None:
    receiver.answer, receiver.answer_headers = status, {"Retry-After": "86400"}
    async with in_process_client(database, WEBHOOK_RETRY_AFTER_MAX="600", **ALLOW) as client:
        await register(client, receiver.url)
        await create_coupon(client, "BUSY", 5)
        await receiver.wait_for_requests(1)
        wait = await wait_for_next_attempt(db)
    assert 599 <= wait <= 601  # the cap, not the backoff (0.05 s) nor the day asked for
    assert len(receiver.arrivals) == 1


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("120", 120.0), (" 5 ", 5.0), ("999999", 600.0), ("soon", None), (None, None),
     ("Thu, 01 Jan 1970 00:00:00 GMT", 0.0), ("Fri, 31 Dec 9999 23:59:59 GMT", 600.0)],
)  # fmt: skip
def test_a_retry_after_value_is_read_as_seconds_or_a_date(
    value: str | None, seconds: float | None
) -> None:
    assert retry_after(value, 600.0) == seconds


async def wait_for_next_attempt(db: asyncpg.Connection[Any]) -> float:
    """Seconds from the failed attempt to the next one, once recorded."""
    deadline = time.monotonic() + 30
    while True:
        wait = await db.fetchval(
            "SELECT extract(epoch FROM next_attempt_at - last_error_at)::float8 "
            "FROM webhook_streams WHERE last_error IS NOT NULL"
        )
        if wait is not None:
            return float(wait)
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
