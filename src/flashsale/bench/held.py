"""What the server still holds once the attackers have gone: its open TCP
connections (read from the kernel's table, /proc/net/tcp), and what its
/metrics says the workers hold (``flashsale_held``: requests in flight,
event streams, spooled bytes; ``flashsale_db_pool_connections`` in use,
which covers the large-read slots: each holds a pool connection). The
gauges are sampled by each worker once a second, so a reading is at most
that old."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

BACK_WITHIN_S = 15.0
_SAMPLE = re.compile(
    r'^(flashsale_held|flashsale_db_pool_connections)\{\w+="(\w+)"\} ([0-9.e+]+)$', re.M
)
_ESTABLISHED = "01"  # the state column of /proc/net/tcp (include/net/tcp_states.h)


@dataclass(frozen=True, slots=True)
class Held:
    connections: int  # established TCP connections on the server's port
    requests: int  # in flight, this reading's own scrape included
    streams: int
    spooled_bytes: int
    pool_in_use: int
    after_s: float  # since the attacker left

    @property
    def back(self) -> bool:
        """Nothing held but the one scrape that read it."""
        return (
            self.connections <= 1
            and self.requests <= 1
            and self.streams == self.spooled_bytes == self.pool_in_use == 0
        )

    def line(self) -> str:
        verdict = "every connection and slot back" if self.back else "NOT all back"
        return f"held by the server {self.after_s:.1f} s after the attack ({verdict}): {self}"

    def __str__(self) -> str:
        return (
            f"{self.connections} connection(s), {self.requests} request(s) in flight "
            f"(the reading's own included), {self.streams} stream(s), "
            f"{self.spooled_bytes} spooled bytes, {self.pool_in_use} pool connection(s) in use"
        )


def wait_until_back(base_url: str, since: float) -> Held:
    """The first reading with nothing held, or the last one after
    BACK_WITHIN_S."""
    while True:
        held = read_held(base_url, since)
        if held.back or held.after_s >= BACK_WITHIN_S:
            return held
        time.sleep(0.5)


def read_held(base_url: str, since: float) -> Held:
    port = urlsplit(base_url).port or 80
    samples = {(name, what): int(float(value)) for name, what, value in _scrape(base_url)}
    return Held(
        connections=established(port),
        requests=samples.get(("flashsale_held", "requests"), 0),
        streams=samples.get(("flashsale_held", "streams"), 0),
        spooled_bytes=samples.get(("flashsale_held", "spooled_bytes"), 0),
        pool_in_use=samples.get(("flashsale_db_pool_connections", "in_use"), 0),
        after_s=time.monotonic() - since,
    )


def _scrape(base_url: str) -> list[tuple[str, str, str]]:
    with httpx.Client(timeout=10.0) as client:  # closed: not counted next time
        return _SAMPLE.findall(client.get(f"{base_url}/metrics").text)


def established(port: int) -> int:
    """Server-side sockets of ``port`` (local port ``port``) that are open."""
    count = 0
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        if not table.exists():
            continue
        for row in table.read_text().splitlines()[1:]:
            fields = row.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == _ESTABLISHED:
                count += 1
    return count
