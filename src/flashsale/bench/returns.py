"""The bench's stock returns while claims go on: half the seeded claims
expire at random over the run (the sweepers and the claim batches take them
back), half are released one by one, evenly over the run, through the
service's own route (DELETE /api/coupons/{name}/claims/{user}), as a shop's
backend releases the coupon of a cancelled order. A release is answered
once the coupon's next claim batch commits, so RELEASERS connections send
them on schedule whatever their latency."""

from __future__ import annotations

import asyncio
import http.client
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote, urlsplit

from flashsale.storage.admin import schedule_expiries

RELEASERS = 16


def return_stock_during(
    database_url: str, base_url: str, coupon: str, *, seeded: list[str], seconds: float
) -> int:
    """How many of the first half of ``seeded`` were released (204)."""
    half = len(seeded) // 2
    asyncio.run(schedule_expiries(database_url, coupon, seeded[half:], seconds))
    return release_evenly(base_url, coupon, seeded[:half], seconds)


def release_evenly(base_url: str, coupon: str, users: list[str], seconds: float) -> int:
    """Release ``users`` evenly over ``seconds``; how many answered 204."""
    start = time.monotonic()
    slots = [(start + i * seconds / len(users), user) for i, user in enumerate(users)]
    with ThreadPoolExecutor(RELEASERS, thread_name_prefix="bench-release") as pool:
        shares = [slots[k::RELEASERS] for k in range(RELEASERS)]
        runs = [pool.submit(_release_on_schedule, base_url, coupon, share) for share in shares]
        return sum(run.result() for run in runs)


def _release_on_schedule(base_url: str, coupon: str, slots: list[tuple[float, str]]) -> int:
    address = urlsplit(base_url)
    connection = http.client.HTTPConnection(address.hostname or "127.0.0.1", address.port)
    end = slots[-1][0] if slots else 0.0
    released = 0
    try:
        for due, user in slots:
            if (delay := due - time.monotonic()) > 0:
                time.sleep(delay)
            elif time.monotonic() - end > 1.0:  # bounded: stops with the load
                break
            path = f"/api/coupons/{quote(coupon, safe='')}/claims/{quote(user, safe='')}"
            connection.request("DELETE", path)
            response = connection.getresponse()
            response.read()
            released += response.status == 204
    finally:
        connection.close()
    return released
