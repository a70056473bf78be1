"""A raffle's entrants, page by page: each entrant's digest (never a user
id) and, once the draw is done, its place: what `flashsale verify-draw`
recomputes the draw from (docs/raffle.md). Same access as the coupon read."""

from __future__ import annotations

import re

from litestar import get
from litestar.datastructures import State

from flashsale.http.allow import with_options
from flashsale.http.context import services_of
from flashsale.http.errors import InvalidRequest
from flashsale.http.openapi import (
    COUPON_NOT_FOUND,
    INVALID_REQUEST,
    SERVICE_UNAVAILABLE,
    documented,
)
from flashsale.http.requests import AFTER, LIMIT, page_limit, require_coupon_name
from flashsale.http.schemas import EntriesPageResponse, EntryItem

_ENTRANT = re.compile(r"^[0-9a-f]{64}$")


def entrant_cursor(after: str | None) -> bytes | None:
    """The entrant a page continues after: the previous page's last
    entrant, in hex (the cursor is public data, nothing to hide)."""
    if after is None:
        return None
    if not _ENTRANT.match(after):
        raise InvalidRequest("after must be an entrant: 64 lowercase hex digits")
    return bytes.fromhex(after)


@get(
    "/api/coupons/{name:str}/entries",
    summary="A raffle's entrants (digests) and, after the draw, their places",
    tags=["coupons"],
    **documented(INVALID_REQUEST, COUPON_NOT_FOUND, SERVICE_UNAVAILABLE),
)
async def list_entries(
    state: State, name: str, limit: str | None = LIMIT, after: str | None = AFTER
) -> EntriesPageResponse:
    """Until the draw is done, by entrant with null places; after it, in
    draw order (place 1 first)."""
    require_coupon_name(name)
    reads = services_of(state).reads
    page = await reads.entries_page(name, after=entrant_cursor(after), limit=page_limit(limit))
    return EntriesPageResponse(
        entries=[EntryItem(row.entrant.hex(), row.place) for row in page.entries],
        next=None if page.next_after is None else page.next_after.hex(),
    )


RAFFLE_HANDLERS = with_options([list_entries])
