"""Tests that cannot leak: a resolver that answers only what the test says
and a guard that fails the test on any connection attempt outside loopback.

Both are installed at the process's lowest Python level (``socket.getaddrinfo``
and ``socket.socket.connect``, which asyncio's resolver and sock_connect
call), so a broken address filter fails a test instead of sending a packet
to 10/8 or 169.254: the guard refuses the connection and the test's
teardown fails on the attempt even if the code under test swallowed it."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from flashsale.http.limits import is_address

_REAL_GETADDRINFO = socket.getaddrinfo
_REAL_CONNECT = socket.socket.connect
_REAL_CONNECT_EX = socket.socket.connect_ex


@dataclass
class Network:
    """``answers[name]``: the resolver's answers in turn (the last repeats)."""

    answers: dict[str, list[list[str]]] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)
    outside: list[Any] = field(default_factory=list)  # connection attempts refused

    def resolve(self, name: str, *answers: list[str]) -> None:
        self.answers[name] = list(answers)

    def getaddrinfo(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name in self.answers:
            self.asked.append(name)
            queue = self.answers[name]
            return [_info(address, port) for address in (queue.pop(0) if len(queue) > 1
                                                         else queue[0])]  # fmt: skip
        if name != "localhost" and not is_address(name):
            raise socket.gaierror(socket.EAI_NONAME, f"{name}: not in the test's resolver")
        return _REAL_GETADDRINFO(host, port, *args, **kwargs)

    def allowed(self, sock: socket.socket, address: Any) -> bool:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return True
        try:
            return ipaddress.ip_address(str(address[0]).split("%", 1)[0]).is_loopback
        except ValueError:
            return False


def _info(address: str, port: Any) -> tuple[Any, ...]:
    if ":" in address:
        return (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, int(port or 0), 0, 0))
    return (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port or 0)))


@pytest.fixture
def network(monkeypatch: pytest.MonkeyPatch) -> Iterator[Network]:
    fake = Network()

    def connect(sock: socket.socket, address: Any) -> None:
        if not fake.allowed(sock, address):
            fake.outside.append(address)
            raise ConnectionRefusedError(f"test guard: no connection to {address!r}")
        _REAL_CONNECT(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> int:
        if not fake.allowed(sock, address):
            fake.outside.append(address)
            return 111  # ECONNREFUSED
        return _REAL_CONNECT_EX(sock, address)

    monkeypatch.setattr(socket, "getaddrinfo", fake.getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    yield fake
    assert fake.outside == [], f"connection attempts outside loopback: {fake.outside}"
