"""The address policy on its own: every form that embeds or reaches an
internal address is refused with a name for what it is, integer, hex and
short IPv4 forms are read as inet_aton reads them, and allowed networks
pass anyway."""

from __future__ import annotations

import ipaddress

import pytest

from flashsale.config import SettingsError, load_settings
from flashsale.delivery.addresses import AddressPolicy, literal_address

REFUSED = [
    ("127.0.0.1", "loopback"), ("::1", "loopback"), ("10.0.0.1", "private"),
    ("172.16.5.4", "private"), ("192.168.1.1", "private"), ("169.254.169.254", "link-local"),
    ("100.64.0.1", "shared"), ("198.18.0.1", "benchmarking"), ("0.0.0.0", "this-network"),
    ("224.0.0.1", "multicast"), ("240.0.0.1", "reserved"), ("255.255.255.255", "reserved"),
    ("192.0.2.1", "documentation"), ("fd00::1", "unique local"), ("fe80::1", "link-local"),
    ("fec0::1", "site-local"), ("ff02::1", "multicast"), ("::127.0.0.1", "IPv4-compatible"),
    ("::ffff:127.0.0.1", "carries 127.0.0.1, loopback"),
    ("::ffff:10.1.2.3", "carries 10.1.2.3, private"),
    ("64:ff9b::7f00:1", "carries 127.0.0.1, loopback"),
    ("64:ff9b::a9fe:a9fe", "carries 169.254.169.254, link-local"),
    ("2002:7f00:1::", "carries 127.0.0.1, loopback"),
    ("2002:c0a8:101::1", "carries 192.168.1.1, private"),
    ("2001:db8::1", "documentation"), ("2001::1", "IETF protocol assignment"),
    ("64:ff9b:1::1", "local-use NAT64"), ("::", "unspecified"),
]  # fmt: skip


@pytest.mark.parametrize(("address", "reason"), REFUSED)
def test_an_internal_address_in_any_form_is_refused_with_what_it_is(
    address: str, reason: str
) -> None:
    refusal = AddressPolicy().refusal(ipaddress.ip_address(address))
    assert refusal is not None
    assert reason in refusal


@pytest.mark.parametrize(
    "address", ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c", "64:ff9b::5db8:d70e",
                "::ffff:93.184.215.14", "2002:5db8:d70e::1"]
)  # fmt: skip
def test_a_globally_routable_address_passes(address: str) -> None:
    assert AddressPolicy().refusal(ipaddress.ip_address(address)) is None


def test_allowed_networks_pass_anyway_and_nothing_else_does() -> None:
    policy = AddressPolicy.configured(" 127.0.0.0/8, fd00::/8 ,")
    assert policy.refusal(ipaddress.ip_address("127.0.0.5")) is None
    assert policy.refusal(ipaddress.ip_address("::ffff:127.0.0.1")) is None  # the same socket
    assert policy.refusal(ipaddress.ip_address("fd00::1")) is None
    assert policy.refusal(ipaddress.ip_address("10.0.0.1")) is not None


@pytest.mark.parametrize(
    ("host", "address"),
    [("2130706433", "127.0.0.1"), ("0x7f.1", "127.0.0.1"), ("127.1", "127.0.0.1"),
     ("0x7f000001", "127.0.0.1"), ("017700000001", "127.0.0.1"), ("10.1", "10.0.0.1"),
     ("192.168.257", "192.168.1.1"), ("127.0.0.1.", "127.0.0.1"), ("[::1]", "::1"),
     ("0", "0.0.0.0")],
)  # fmt: skip
def test_numeric_hosts_are_read_as_inet_aton_reads_them(host: str, address: str) -> None:
    assert literal_address(host) == ipaddress.ip_address(address)


@pytest.mark.parametrize("host", ["1.2.3.4.5", "256.1.1.1", "0x100000000", "09.1", "a.0x7f.1"])
def test_a_host_that_looks_numeric_but_is_no_address_is_refused(host: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - any reading failure
        literal_address(host)


@pytest.mark.parametrize("host", ["orders.example", "1e100.net", "x1.example", "localhost"])
def test_a_name_is_a_name(host: str) -> None:
    assert literal_address(host) is None


def test_a_network_that_is_no_cidr_stops_the_service_at_start() -> None:
    with pytest.raises(SettingsError, match="WEBHOOK_ALLOW_NETWORKS: 'nope' is not a CIDR"):
        load_settings({"WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8,nope"})
