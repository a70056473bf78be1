"""Which addresses a webhook may reach: globally routable ones only, judged
the way Stripe's Smokescreen and Svix do it, plus the networks an operator
allows anyway (``WEBHOOK_ALLOW_NETWORKS``).

``ipaddress.is_global`` alone is not enough on Python 3.11: it calls NAT64
(``64:ff9b::7f00:1``), 6to4 (``2002:7f00:1::``), IPv4-compatible
(``::127.0.0.1``) and site-local (``fec0::1``) addresses global. Forms that
carry an IPv4 address are judged by that address; the rest of the list
names what each refused network is, for the reason an admin reads.

Hosts written as numbers the way ``inet_aton`` reads them (``2130706433``,
``0x7f.1``, ``127.1``) are read here the same way, so the judged address
is the one a resolver would have connected to."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_REFUSED: list[tuple[str, str]] = [
    ("0.0.0.0/8", "this-network"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared (carrier-grade NAT)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "IETF protocol assignment"),
    ("192.0.2.0/24", "documentation"),
    ("192.88.99.0/24", "6to4 relay"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("::/96", "IPv4-compatible"),
    ("64:ff9b:1::/48", "local-use NAT64"),
    ("100::/64", "discard-only"),
    ("2001::/23", "IETF protocol assignment"),
    ("2001:db8::/32", "documentation"),
    ("3fff::/20", "documentation"),
    ("5f00::/16", "segment routing"),
    ("fc00::/7", "unique local (private)"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local"),
    ("ff00::/8", "multicast"),
]
REFUSED_NETWORKS: list[tuple[IPNetwork, str]] = [
    (ipaddress.ip_network(cidr), label) for cidr, label in _REFUSED
]
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NUMBER = re.compile(r"^(0[xX][0-9a-fA-F]*|[0-9]+)$")


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries to the wire: IPv4-mapped
    (``::ffff:a.b.c.d``, a dual-stack socket connects to a.b.c.d), NAT64's
    well-known prefix, 6to4 (``2002:AABB:CCDD::``)."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    allowed: tuple[IPNetwork, ...] = ()

    @classmethod
    def configured(cls, allow_networks: str) -> AddressPolicy:
        """From ``WEBHOOK_ALLOW_NETWORKS``: comma-separated CIDRs."""
        cidrs = [part.strip() for part in allow_networks.split(",") if part.strip()]
        return cls(tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs))

    def refusal(self, address: IPAddress) -> str | None:
        """Why ``address`` may not be reached; None when it may."""
        if any(address in network for network in self.allowed):
            return None
        carried = embedded_ipv4(address)
        if carried is not None:
            reason = self.refusal(carried)
            return None if reason is None else f"carries {carried}, {reason}"
        for network, label in REFUSED_NETWORKS:
            if address in network:
                return f"{label} address"
        if not address.is_global:
            return "not a globally routable address"
        return None


def literal_address(host: str) -> IPAddress | None:
    """The address ``host`` names when it is written as one (IPv6 without its
    brackets, dotted IPv4 or any ``inet_aton`` form); None for a name.
    ValueError for a host whose last label is a number that is no address
    (``1.2.3.4.5``): a resolver would take it as a name, a browser refuses."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    labels = host.removesuffix(".").split(".")
    if not _NUMBER.match(labels[-1]):
        return None
    if len(labels) > 4 or not all(_NUMBER.match(label) for label in labels):
        raise ValueError(f"{host} is neither a name nor an IPv4 address")
    return _inet_aton(labels)


def _inet_aton(labels: list[str]) -> ipaddress.IPv4Address:
    """``a``, ``a.b``, ``a.b.c``, ``a.b.c.d``: the last part fills the bytes left."""
    numbers = [_number(label) for label in labels]
    last_bytes = 5 - len(numbers)
    if any(n > 255 for n in numbers[:-1]) or numbers[-1] >= 256**last_bytes:
        raise ValueError(f"{'.'.join(labels)} is out of IPv4 range")
    value = 0
    for n in numbers[:-1]:
        value = value * 256 + n
    return ipaddress.IPv4Address(value * 256**last_bytes + numbers[-1])


def _number(label: str) -> int:
    if label[:2].lower() == "0x":
        return int(label[2:] or "0", 16)
    if len(label) > 1 and label.startswith("0"):
        return int(label, 8)
    return int(label)
