"""``GET /api/coupons/{name}`` as a stream: the same JSON as ever, written a
few hundred KB at a time from one database snapshot, so a coupon with a
million claimers costs neither a million-element list nor a 15 MB buffer."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import msgspec
from litestar import MediaType
from litestar.response import Stream

from flashsale.browsing import CouponBrowser
from flashsale.storage.claimers import CouponSnapshot

log = logging.getLogger("flashsale.http")

CHUNK_BYTES = 256 * 1024
_ENCODER = msgspec.json.Encoder()


async def coupon_stream(browser: CouponBrowser, name: str) -> Stream:
    """404 is decided here, before any byte is sent; later failures can only
    cut the body short."""
    snapshot = await browser.open_coupon(name)
    return Stream(coupon_json(snapshot), media_type=MediaType.JSON)


def _head(snapshot: CouponSnapshot) -> bytes:
    header = snapshot.header
    fields = {
        "name": header.name,
        "amount": header.amount,
        "remaining_amount": header.remaining_amount,
    }
    # '{"name":..,"remaining_amount":N}' -> '{..,"remaining_amount":N,"claimed_by":['
    return _ENCODER.encode(fields)[:-1] + b',"claimed_by":['


async def coupon_json(snapshot: CouponSnapshot) -> AsyncIterator[bytes]:
    buffer = bytearray(_head(snapshot))
    first = True
    try:
        async for batch in snapshot.user_id_batches():
            if not batch:
                continue
            if not first:
                buffer += b","
            buffer += _ENCODER.encode(batch)[1:-1]  # the array's items without brackets
            first = False
            if len(buffer) >= CHUNK_BYTES:
                yield bytes(buffer)
                buffer.clear()
    except Exception as error:
        # The 200 is already sent: raising makes the server abort the body, so
        # the client sees a truncated response instead of valid-looking JSON.
        log.error("coupon %r: stream cut mid-body (%s)", snapshot.header.name, type(error).__name__)
        raise
    finally:
        await snapshot.close()
    buffer += b"]}"
    yield bytes(buffer)
