"""The bench's stock returns while claims go on: half the seeded claims
expire at random over the run (the sweepers and the claim batches take them
back), half are released one by one, evenly over the run, through the
service's own route (DELETE /api/coupons/{name}/claims/{user}), as a shop's
backend releases the coupon of a cancelled order. A release is answered
once the coupon's next claim batch commits, so RELEASERS connections send
them on schedule whatever their latency.

The releasers are a load generator, and share the two cores with the server
and PostgreSQL as wrk does: they write prepared request bytes on keep-alive
connections and read back only the status line and the body's length, on
one uvloop event loop. http.client in 16 threads cost 150-170 us of CPU per
release here (its header parsing, the threads), this 100-105 us (measured
with getrusage around 4,000 releases over 8 s): at the scenario's 500
releases/s, 1.5% of the machine given back to the server it measures."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import quote, urlsplit

import uvloop

from flashsale.storage.admin import schedule_expiries

RELEASERS = 16
_CONTENT_LENGTH = b"\r\ncontent-length:"


def return_stock_during(
    database_url: str, base_url: str, coupon: str, *, seeded: list[str], seconds: float
) -> int:
    """How many of the first half of ``seeded`` were released (204)."""
    half = len(seeded) // 2
    asyncio.run(schedule_expiries(database_url, coupon, seeded[half:], seconds))
    return release_evenly(base_url, coupon, seeded[:half], seconds)


def release_evenly(base_url: str, coupon: str, users: list[str], seconds: float) -> int:
    """Release ``users`` evenly over ``seconds``; how many answered 204."""
    return uvloop.run(_release_evenly(base_url, coupon, users, seconds))


async def _release_evenly(base_url: str, coupon: str, users: list[str], seconds: float) -> int:
    address = urlsplit(base_url)
    host, port = address.hostname or "127.0.0.1", address.port or 80
    start = time.monotonic()
    slots = [(start + i * seconds / len(users), user) for i, user in enumerate(users)]
    shares = [slots[k::RELEASERS] for k in range(RELEASERS)]
    runs = [_release_on_schedule(host, port, coupon, share) for share in shares if share]
    return sum(await asyncio.gather(*runs))


async def _release_on_schedule(
    host: str, port: int, coupon: str, slots: list[tuple[float, str]]
) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    prefix = f"DELETE /api/coupons/{quote(coupon, safe='')}/claims/".encode()
    suffix = f" HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    end = slots[-1][0]
    released = 0
    try:
        for due, user in slots:
            if (delay := due - time.monotonic()) > 0:
                await asyncio.sleep(delay)
            elif time.monotonic() - end > 1.0:  # bounded: stops with the load
                break
            writer.write(prefix + quote(user, safe="").encode() + suffix)
            released += await _status(reader) == 204
    finally:
        writer.close()
    return released


async def _status(reader: asyncio.StreamReader) -> int:
    """The response's status; its body read and dropped (keep-alive)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lower = head.lower()
    if (at := lower.find(_CONTENT_LENGTH)) >= 0:
        length = int(lower[at + len(_CONTENT_LENGTH) : lower.index(b"\r\n", at + 2)])
        await reader.readexactly(length)
    return int(head[9:12])
