"""An endpoint's backlog is bounded: past WEBHOOK_BACKLOG_MAX events behind,
it is disabled with a reason that names the events feed; meanwhile its lag
and backlog are metrics."""

from __future__ import annotations

import asyncio
import re
import time

from tests.support.api import Client, claim_coupon, in_process_client
from tests.support.network import Network
from tests.support.receiver import Receiver
from tests.support.webhooks import down_endpoint, wait_for

DOWN = {"WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8", "WEBHOOK_BACKOFF_BASE": "3600"}


async def test_an_endpoint_too_far_behind_is_disabled_and_told_to_read_the_feed(
    network: Network, receiver: Receiver, database: str
) -> None:
    async with in_process_client(database, WEBHOOK_BACKLOG_MAX="3", **DOWN) as client:
        hook = await down_endpoint(client, receiver, "FLOOD", 50)
        for user in range(5):
            await claim_coupon(client, f"u{user}", "FLOOD")
        state = await wait_for(client, lambda h: h["status"] == "disabled", hook["id"])
    assert re.fullmatch(
        r"backlog of \d+ events passed WEBHOOK_BACKLOG_MAX \(3\): read GET /api/events instead",
        state["disabled_reason"],
    ), state
    assert len(receiver.arrivals) == 1  # one attempt, then an hour's backoff


async def test_each_endpoints_lag_and_backlog_are_metrics(
    network: Network, receiver: Receiver, database: str
) -> None:
    async with in_process_client(database, **DOWN) as client:
        hook = await down_endpoint(client, receiver, "LAGGING", 5)
        await claim_coupon(client, "ann", "LAGGING")
        label = f'webhook="{hook["id"]}"'
        deadline = time.monotonic() + 30
        while f"flashsale_webhook_backlog{{{label}}} 2.0" not in (text := await metrics(client)):
            assert time.monotonic() < deadline, text
            await asyncio.sleep(0.2)
    lag = re.search(rf"flashsale_webhook_lag_seconds\{{{label}\}} ([0-9.e+-]+)", text)
    assert lag is not None
    assert float(lag[1]) >= 0


async def metrics(client: Client) -> str:
    response = await client.get("/metrics")
    assert response.status_code == 200
    return response.text
