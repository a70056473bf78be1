"""Deliveries in the Standard Webhooks format, checked as a receiver checks
them (the reference ``standardwebhooks`` library): a secret made by the
service and shown once, a given one in the whsec_ form, every delivery
verifying, and a rotation that keeps a receiver verifying throughout."""

from __future__ import annotations

import time
from typing import Any

from flashsale.service.signing import is_secret
from tests.support.api import Client, claim_coupon, create_coupon
from tests.support.receiver import Receiver
from tests.support.webhooks import register


async def test_a_secret_is_made_when_none_is_given_and_shown_only_once(
    hooks_client: Client, receiver: Receiver
) -> None:
    created = await hooks_client.post("/api/webhooks", json={"url": receiver.url})
    assert created.status_code == 201, created.text
    secret = created.json()["secret"]
    assert is_secret(secret)
    assert secret not in (await hooks_client.get("/api/webhooks")).text
    other = await hooks_client.post("/api/webhooks", json={"url": receiver.url})
    assert other.json()["secret"] != secret
    assert (await hooks_client.delete(f"/api/webhooks/{other.json()['id']}")).status_code == 204
    receiver.secret = secret
    await create_coupon(hooks_client, "MADE_SECRET", 5)
    await receiver.wait_for(1)
    [arrival] = receiver.arrivals
    assert arrival.verified
    assert arrival.legacy_verified  # the deprecated header, one more release
    assert abs(int(arrival.headers["webhook-timestamp"]) - time.time()) < 300
    assert arrival.event_id == str(arrival.body["id"])  # what a receiver deduplicates on
    assert arrival.signatures == 1


async def test_a_rotation_keeps_a_receiver_verifying_throughout(
    hooks_client: Client, receiver: Receiver
) -> None:
    hook = await register(hooks_client, receiver.url)
    await create_coupon(hooks_client, "ROTATED", 50)
    await receiver.wait_for(1)
    rotated = await rotate(hooks_client, hook["id"], previous_valid_seconds=3600)
    await claim_coupon(hooks_client, "during-1", "ROTATED")  # the receiver knows the old one only
    await receiver.wait_for(2)
    receiver.secret = rotated["secret"]  # the receiver moves to the new one, at its pace
    await claim_coupon(hooks_client, "during-2", "ROTATED")
    await receiver.wait_for(3)
    ended = await rotate(hooks_client, hook["id"], previous_valid_seconds=0)
    receiver.secret = ended["secret"]
    await claim_coupon(hooks_client, "after", "ROTATED")
    await receiver.wait_for(4)
    assert [a.verified for a in receiver.arrivals] == [True] * 4
    assert [a.signatures for a in receiver.arrivals] == [1, 2, 2, 1]


async def test_a_rotation_refuses_a_secret_in_another_form_and_an_unknown_endpoint(
    hooks_client: Client, receiver: Receiver
) -> None:
    hook = await register(hooks_client, receiver.url)
    bad = await hooks_client.post(f"/api/webhooks/{hook['id']}/secret", json={"secret": "x" * 40})
    assert bad.status_code == 400
    assert bad.json()["message"].startswith("secret must be whsec_")
    too_long = await hooks_client.post(
        f"/api/webhooks/{hook['id']}/secret", json={"previous_valid_seconds": 31 * 86400}
    )
    assert too_long.status_code == 400
    assert too_long.json()["message"].startswith("previous_valid_seconds")
    for missing in ("999", "0", "x"):
        response = await hooks_client.post(f"/api/webhooks/{missing}/secret", json={})
        assert response.status_code == 404
        assert response.json()["error"] == "webhook_not_found"


async def test_a_given_secret_is_the_one_that_signs(
    hooks_client: Client, receiver: Receiver
) -> None:
    hook = await register(hooks_client, receiver.url)
    given = "whsec_" + "QUJD" * 10  # 30 bytes
    rotated = await rotate(hooks_client, hook["id"], secret=given, previous_valid_seconds=0)
    assert rotated["secret"] == given
    receiver.secret = given
    await create_coupon(hooks_client, "GIVEN", 5)
    await receiver.wait_for(1)
    assert receiver.arrivals[0].verified


async def rotate(client: Client, webhook_id: int, **fields: Any) -> dict[str, Any]:
    response = await client.post(f"/api/webhooks/{webhook_id}/secret", json=fields)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["id"] == webhook_id
    assert is_secret(body["secret"])
    return body
