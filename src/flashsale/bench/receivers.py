"""The webhook bench's receivers: a few HTTP/1.1 endpoints on one loopback
port, each answering after its delay with a body of its size, counting 2xx
answers per path. Built on asyncio streams alone: the bench ships in the wheel,
and the wheel has no HTTP server library (aiohttp is a development dependency).

They understand what the webhook sender sends (a POST with Content-Length,
keep-alive connections), nothing more; the head of a request is bounded."""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field

from flashsale.bench.server import free_port

HEAD_MAX = 64 * 1024  # bytes of request line and headers
BODY_MAX = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str
    delay_s: float  # before answering
    body_bytes: int  # of the answer


@dataclass
class Receivers:
    """The endpoints, served by a thread of their own with its own event loop
    (wrk blocks the bench's main thread)."""

    endpoints: tuple[Endpoint, ...]
    answered: dict[str, int] = field(default_factory=dict)  # events in answered requests
    requests: dict[str, int] = field(default_factory=dict)  # answered requests
    base_url: str = ""
    _loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        ready = threading.Event()
        threading.Thread(target=self._serve, args=(ready,), daemon=True).start()
        if not ready.wait(10):
            raise RuntimeError("the webhook receivers did not start within 10 s")

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)

    def _serve(self, ready: threading.Event) -> None:
        self._loop = asyncio.new_event_loop()
        port = free_port()
        start = asyncio.start_server(self._connection, "127.0.0.1", port, limit=HEAD_MAX)
        self._loop.run_until_complete(start)
        self.base_url = f"http://127.0.0.1:{port}"
        ready.set()
        self._loop.run_forever()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await self._one_request(reader, writer):
                pass
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass  # the sender went away or sent what a receiver refuses
        finally:
            writer.close()

    async def _one_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Answers one request; False once the connection is to close."""
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        path = lines[0].split(" ")[1] if lines[0].count(" ") >= 2 else ""
        headers = dict(_header(line) for line in lines[1:] if ":" in line)
        length = min(int(headers.get("content-length", "0") or 0), BODY_MAX)
        body = await reader.readexactly(length)
        endpoint = next((e for e in self.endpoints if f"/{e.name}" == path), None)
        if endpoint is None:
            writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
        else:
            await asyncio.sleep(endpoint.delay_s)
            self.answered[endpoint.name] = self.answered.get(endpoint.name, 0) + events_in(body)
            self.requests[endpoint.name] = self.requests.get(endpoint.name, 0) + 1
            size = endpoint.body_bytes
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size + b"x" * size)
        await writer.drain()
        return headers.get("connection", "").lower() != "close"


def events_in(body: bytes) -> int:
    """Events a delivery carries: a batch's count (WEBHOOK_BATCH_MAX above
    1), else one."""
    if not body.startswith(b'{"type":"batch"'):
        return 1
    try:
        return len(json.loads(body)["events"])
    except (ValueError, KeyError, TypeError):
        return 0


def _header(line: str) -> tuple[str, str]:
    name, _, value = line.partition(":")
    return name.strip().lower(), value.strip()
