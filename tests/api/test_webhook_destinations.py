"""Webhooks cannot be aimed inside: every address form that reaches an
internal address is refused at registration (400 with the reason) and at
delivery (a failure with its reason, no request sent), a name that changes
its answer (DNS rebinding) is caught at delivery, and a connection goes to
the address that was checked. Every test runs with the test's resolver and
a guard that fails it on any connection attempt outside loopback."""

from __future__ import annotations

import ssl

import pytest
import trustme

from flashsale.delivery.addresses import AddressPolicy
from flashsale.delivery.destinations import Destinations
from flashsale.delivery.sender import HttpSender
from tests.support.api import Client, create_coupon, in_process_client
from tests.support.network import Network
from tests.support.receiver import TEST_SECRET as SECRET
from tests.support.receiver import Receiver
from tests.support.webhooks import register, wait_for

LOOPBACK = "127.0.0.0/8"
PUBLIC = "93.184.215.14"  # never connected to: the guard would fail the test

# (host as written in the URL, the test resolver's answer for a name, the reason)
FORMS: list[tuple[str, list[str] | None, str]] = [
    ("169.254.169.254", None, "169.254.169.254 is a link-local address"),
    ("[::1]", None, "::1 is a loopback address"),
    ("localhost", ["127.0.0.1", "::1"], "localhost resolves to 127.0.0.1, a loopback address"),
    ("2130706433", None, "127.0.0.1 is a loopback address"),
    ("0x7f.1", None, "127.0.0.1 is a loopback address"),
    ("127.1", None, "127.0.0.1 is a loopback address"),
    ("[::ffff:127.0.0.1]", None, "carries 127.0.0.1, loopback address"),
    ("10.0.0.1", None, "10.0.0.1 is a private address"),
    ("192.168.1.1", None, "192.168.1.1 is a private address"),
    ("[fd00::1]", None, "fd00::1 is a unique local (private) address"),
    ("[64:ff9b::7f00:1]", None, "carries 127.0.0.1, loopback address"),
    ("[2002:7f00:1::]", None, "carries 127.0.0.1, loopback address"),
    ("[::127.0.0.1]", None, "IPv4-compatible address"),
    ("[fec0::1]", None, "fec0::1 is a site-local address"),
    ("100.64.0.1", None, "shared (carrier-grade NAT) address"),
    ("internal.test", ["10.1.2.3"], "internal.test resolves to 10.1.2.3, a private address"),
    ("mixed.test", [PUBLIC, "192.168.0.7"], "resolves to 192.168.0.7, a private address"),
    ("nowhere.test", None, "nowhere.test does not resolve"),
]
FORM_IDS = [host for host, _, _ in FORMS]


def sender(allow: str = "", tls: ssl.SSLContext | None = None) -> HttpSender:
    destinations = Destinations(AddressPolicy.configured(allow))
    return HttpSender(destinations, timeout=5, connect_timeout=2, retry_after_max=60, tls=tls)


@pytest.mark.parametrize(("host", "answer", "reason"), FORMS, ids=FORM_IDS)
async def test_each_internal_form_is_refused_at_registration_with_the_reason(
    client: Client, network: Network, host: str, answer: list[str] | None, reason: str
) -> None:
    if answer is not None:
        network.resolve(host, answer)
    response = await client.post(
        "/api/webhooks", json={"url": f"http://{host}:8080/hook", "secret": SECRET}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "destination_refused"
    assert response.json()["message"].startswith("url refused: ")
    assert reason in response.json()["message"]
    assert (await client.get("/api/webhooks")).json() == {"webhooks": [], "next": None}


@pytest.mark.parametrize(("host", "answer", "reason"), FORMS, ids=FORM_IDS)
async def test_each_internal_form_is_refused_at_delivery_and_nothing_is_sent(
    network: Network, receiver: Receiver, host: str, answer: list[str] | None, reason: str
) -> None:
    if answer is not None:
        network.resolve(host, answer)
    posts = sender()
    try:
        outcome = await posts.post(receiver.url_at(host), b"{}", {})
    finally:
        await posts.close()
    assert not outcome.delivered
    assert outcome.error is not None
    assert outcome.error.startswith("refused: ")
    assert reason in outcome.error
    assert receiver.arrivals == []


async def test_a_name_that_rebinds_after_registration_is_refused_at_delivery(
    network: Network, receiver: Receiver, database: str
) -> None:
    network.resolve("rebind.test", [PUBLIC], ["127.0.0.1"])
    async with in_process_client(database, WEBHOOK_BACKOFF_BASE="30") as client:
        await register(client, receiver.url_at("rebind.test"))
        await create_coupon(client, "REBOUND", 5)
        listed = await wait_for(client, lambda h: h["last_error"] is not None)
    assert listed["last_error"] == "refused: rebind.test resolves to 127.0.0.1, a loopback address"
    assert (listed["status"], listed["pending"]) == ("enabled", 1)
    assert receiver.arrivals == []


async def test_a_connection_goes_to_the_address_that_was_checked(
    network: Network, receiver: Receiver
) -> None:
    """Resolved once per connection: the second answer (internal) is never
    used by the connection the first answer opened."""
    network.resolve("pinned.test", ["127.0.0.1"], ["10.9.9.9"])
    posts = sender(allow=LOOPBACK)
    try:
        for _ in range(3):  # one connection, kept alive
            outcome = await posts.post(receiver.url_at("pinned.test"), b"{}", {})
            assert outcome.delivered, outcome
    finally:
        await posts.close()
    assert network.asked == ["pinned.test"]
    again = sender(allow=LOOPBACK)  # a new connection resolves again: refused
    try:
        refused = await again.post(receiver.url_at("pinned.test"), b"{}", {})
    finally:
        await again.close()
    assert refused.error == "refused: pinned.test resolves to 10.9.9.9, a private address"
    assert len(receiver.arrivals) == 3


async def test_https_to_a_pinned_address_sends_sni_and_checks_the_name(
    network: Network,
) -> None:
    authority = trustme.CA()
    trusted = ssl.create_default_context()
    authority.configure_trust(trusted)
    served_names: list[str | None] = []
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("hooks.test").configure_cert(tls)
    tls.sni_callback = lambda _sock, name, _ctx: served_names.append(name)
    endpoint = Receiver(SECRET)
    await endpoint.start(tls)
    network.resolve("hooks.test", ["127.0.0.1"])
    network.resolve("other.test", ["127.0.0.1"])
    posts = sender(allow=LOOPBACK, tls=trusted)
    try:
        delivered = await posts.post(endpoint.url_at("hooks.test"), b"{}", {})
        wrong_name = await posts.post(endpoint.url_at("other.test"), b"{}", {})
    finally:
        await posts.close()
        await endpoint.stop()
    assert delivered.delivered, delivered
    assert served_names[0] == "hooks.test"
    assert not wrong_name.delivered
    assert wrong_name.error == "request failed: ConnectError"  # the certificate's name
    assert len(endpoint.arrivals) == 1


@pytest.mark.parametrize("url", ["http://user:pass@hooks.test/h", "http://token@hooks.test/h"])
async def test_a_url_with_credentials_is_refused_and_never_repeated(
    client: Client, network: Network, url: str
) -> None:
    network.resolve("hooks.test", [PUBLIC])
    response = await client.post("/api/webhooks", json={"url": url, "secret": SECRET})
    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_request",
        "message": "url must not carry credentials (user:password@)",
    }
    posts = sender()
    try:
        outcome = await posts.post(url, b"{}", {})
    finally:
        await posts.close()
    assert outcome.error == "refused: a URL must not carry credentials"
    assert network.asked == []


async def test_allowed_networks_let_a_loopback_receiver_in(
    network: Network, receiver: Receiver, database: str
) -> None:
    network.resolve("on-premises.test", ["127.0.0.1"])
    async with in_process_client(database, WEBHOOK_ALLOW_NETWORKS=LOOPBACK) as client:
        for url in (receiver.url, receiver.url_at("on-premises.test")):
            await register(client, url)
