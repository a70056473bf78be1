"""Batches (WEBHOOK_BATCH_MAX above 1): one POST carries a coupon's next
events in seq order, at most WEBHOOK_BATCH_MAX of them and
WEBHOOK_BATCH_BYTES of body; each verifies with ``standardwebhooks``; a
retried batch comes with the same ``webhook-id`` and the same events, and a
receiver that deduplicates on each event's ``id`` sees every event once, in
order."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.api import Client, claim_coupon, create_coupon, in_process_client
from tests.support.network import Network
from tests.support.receiver import Arrival, Receiver
from tests.support.webhooks import FAST, register, wait_until

MAX_EVENTS = 4


@pytest.fixture
def hooks_settings() -> dict[str, str]:
    return {"WEBHOOK_BATCH_MAX": str(MAX_EVENTS), "WEBHOOK_TIMEOUT": "1"}


def processed(arrivals: list[Arrival]) -> list[dict[str, Any]]:
    """What a receiver deduplicating on each event's id keeps, in arrival
    order: every batch it took (answered 2xx, or stalled past the sender's
    timeout after reading it) counts."""
    seen: set[int] = set()
    kept = []
    for arrival in arrivals:
        if arrival.status not in (0, 200):
            continue
        for event in arrival.body["events"]:
            if event["id"] not in seen:
                seen.add(event["id"])
                kept.append(event)
    return kept


async def queued_while_down(client: Client, receiver: Receiver, coupon: str, users: int) -> None:
    """An endpoint whose receiver answers 503 until the coupon and its
    ``users`` claims (1 + users events) are all written."""
    receiver.down = True
    await register(client, receiver.url)
    await create_coupon(client, coupon, users + 5)
    for number in range(users):
        await claim_coupon(client, f"user-{number}", coupon)
    attempts = len(receiver.arrivals)
    await wait_until(lambda: len(receiver.arrivals) > attempts)  # tried with all of them there


async def test_a_batch_verifies_and_carries_a_coupons_events_in_order_within_the_count(
    hooks_client: Client, receiver: Receiver
) -> None:
    await queued_while_down(hooks_client, receiver, "BATCHED", 9)
    receiver.down = False
    await wait_until(lambda: len(processed(receiver.arrivals)) == 10)
    delivered = [arrival for arrival in receiver.arrivals if arrival.status == 200]
    assert all(arrival.verified for arrival in receiver.arrivals)
    assert [len(arrival.body["events"]) for arrival in delivered] == [4, 4, 2]
    assert [event["seq"] for event in processed(delivered)] == list(range(1, 11))
    for arrival in delivered:
        ids = [event["id"] for event in arrival.body["events"]]
        assert arrival.body["type"] == "batch"
        assert arrival.event_id == f"batch_{ids[0]}_{ids[-1]}"  # the batch's own webhook-id


async def test_a_retried_batch_has_the_same_id_and_events_and_deduplicates_per_event(
    hooks_client: Client, receiver: Receiver
) -> None:
    await queued_while_down(hooks_client, receiver, "RETRIED", 5)
    receiver.stall_once = 3.0  # past WEBHOOK_TIMEOUT: taken, but a failure for the sender
    receiver.down = False
    await wait_until(lambda: len(processed(receiver.arrivals)) == 6)
    [stalled] = [index for index, arrival in enumerate(receiver.arrivals) if arrival.status == 0]
    again = receiver.arrivals[stalled + 1]
    assert again.status == 200
    assert again.event_id == receiver.arrivals[stalled].event_id
    assert again.body == receiver.arrivals[stalled].body  # the same events, sent again
    assert [event["seq"] for event in processed(receiver.arrivals)] == list(range(1, 7))
    assert all(arrival.verified for arrival in receiver.arrivals)


async def test_a_batch_stays_within_its_bytes(
    database: str, network: Network, receiver: Receiver
) -> None:
    limits = {"WEBHOOK_BATCH_MAX": "100", "WEBHOOK_BATCH_BYTES": "1024"}
    async with in_process_client(database, **FAST, **limits) as client:
        await queued_while_down(client, receiver, "BYTES", 19)
        receiver.down = False
        await wait_until(lambda: len(processed(receiver.arrivals)) == 20)
    delivered = [arrival for arrival in receiver.arrivals if arrival.status == 200]
    sizes = [int(arrival.headers["Content-Length"]) for arrival in delivered]
    assert max(sizes) <= 1024
    assert len(delivered) < 20  # several events per POST
    assert [event["seq"] for event in processed(delivered)] == list(range(1, 21))


async def test_two_instances_batching_share_the_streams_and_send_each_event_once(
    database: str, network: Network, receiver: Receiver
) -> None:
    settings = {**FAST, "WEBHOOK_BATCH_MAX": "3"}
    async with (
        in_process_client(database, **settings) as one,
        in_process_client(database, **settings) as other,
    ):
        receiver.down = True
        await register(one, receiver.url)
        coupons = [f"SHARED_{number}" for number in range(4)]
        for coupon in coupons:
            await create_coupon(other, coupon, 20)
            for user in range(7):
                await claim_coupon(one if user % 2 else other, f"u{user}", coupon)
        receiver.down = False
        await wait_until(lambda: len(processed(receiver.arrivals)) == 4 * 8)
    delivered = [arrival for arrival in receiver.arrivals if arrival.status == 200]
    sent = [event["id"] for arrival in delivered for event in arrival.body["events"]]
    assert len(sent) == len(set(sent)) == 32  # no event twice
    for coupon in coupons:
        seqs = [event["seq"] for event in processed(delivered) if event["coupon_name"] == coupon]
        assert seqs == list(range(1, 9))
