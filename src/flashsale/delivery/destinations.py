"""Where a webhook may be sent, checked once per connection and pinned.

A host is resolved once; every address it resolves to must pass the
AddressPolicy, and the connection goes to one of those checked addresses,
never to a second answer of the resolver (DNS rebinding: a name that
resolves to a public address for the check and to 127.0.0.1 for the
connection). ``PinnedBackend`` does this inside httpcore's connection
set-up, so TLS still sends the URL's host name as SNI and verifies the
certificate against it (httpcore's start_tls(server_hostname=host))."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import urlsplit

import httpcore

from flashsale.delivery.addresses import AddressPolicy, IPAddress, literal_address

Resolve = Callable[[str, int], Awaitable[list[IPAddress]]]
# httpcore's own alias for socket options, spelled out (it is not exported).
SocketOption = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)


class DestinationRefused(Exception):
    """No request was sent: ``reason`` says why (for the endpoint's state)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def system_resolve(host: str, port: int) -> list[IPAddress]:
    """Every address the system resolver gives ``host`` (scope ids dropped)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found = (ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos)
    return list(dict.fromkeys(found))


class Destinations:
    """The check of a URL (registration) and of a host (each connection)."""

    def __init__(
        self, policy: AddressPolicy, resolve: Resolve = system_resolve, *, timeout: float = 5.0
    ) -> None:
        self._policy = policy
        self._resolve = resolve
        self._timeout = timeout

    async def refusal(self, url: str) -> str | None:
        """Why POSTs to ``url`` would be refused; None when they would not."""
        try:
            host, port = url_origin(url)
            await self.addresses(host, port)
        except DestinationRefused as refused:
            return refused.reason
        return None

    async def addresses(self, host: str, port: int) -> list[IPAddress]:
        """The checked addresses to connect to; DestinationRefused otherwise."""
        try:
            literal = literal_address(host)
        except ValueError as error:
            raise DestinationRefused(str(error)) from None
        if literal is not None:
            reason = self._policy.refusal(literal)
            if reason is not None:
                raise DestinationRefused(f"{literal} is a {reason}")
            return [literal]
        return self._checked(host, await self._resolved(host, port))

    async def _resolved(self, host: str, port: int) -> list[IPAddress]:
        try:
            async with asyncio.timeout(self._timeout):
                found = await self._resolve(host, port)
        except (OSError, TimeoutError, UnicodeError):
            found = []
        if not found:
            raise DestinationRefused(f"{host} does not resolve")
        return found

    def _checked(self, host: str, addresses: list[IPAddress]) -> list[IPAddress]:
        for address in addresses:
            reason = self._policy.refusal(address)
            if reason is not None:
                raise DestinationRefused(f"{host} resolves to {address}, a {reason}")
        return addresses


def url_origin(url: str) -> tuple[str, int]:
    """The host and port a URL names; DestinationRefused for one carrying
    credentials (they would go out as Basic auth and into logs)."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError:
        raise DestinationRefused("not a URL with a host and a port") from None
    if "@" in parts.netloc:
        raise DestinationRefused("a URL must not carry credentials")
    if not parts.hostname:
        raise DestinationRefused("not a URL with a host and a port")
    return parts.hostname, port


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's connections, to checked addresses only (tried in turn)."""

    def __init__(
        self, destinations: Destinations, inner: httpcore.AsyncNetworkBackend | None = None
    ) -> None:
        self._destinations = destinations
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's signature
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        failure: Exception = DestinationRefused(f"{host} does not resolve")
        for address in await self._destinations.addresses(host, port):
            try:
                return await self._inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                failure = error
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's signature
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise DestinationRefused("webhooks go over TCP only")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)
