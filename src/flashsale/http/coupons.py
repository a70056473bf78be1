"""``/api/coupons``: create a coupon, list them, read one (streamed). Each
handler turns JSON into a call of a use case and returns what it returned;
errors go through errors.py."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any, TypeVar

import msgspec
from litestar import MediaType, Response, get, patch, post
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from litestar.response import Stream
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from flashsale.http import idempotency
from flashsale.http.allow import Resource
from flashsale.http.auth import admin_only, sees_claimers
from flashsale.http.context import services_of, spools_of
from flashsale.http.idempotency import request_key, write_coupons
from flashsale.http.openapi import (
    AMOUNT_BELOW_CLAIMED,
    BODY_FAILURES,
    COUPON_EXISTS,
    COUPON_NOT_FOUND,
    INVALID_REQUEST,
    RAFFLE_DRAWING,
    RAFFLE_ENTRIES_EXIST,
    RAFFLE_FAILURES,
    SERVICE_UNAVAILABLE,
    documented,
)
from flashsale.http.requests import (
    AFTER,
    CHANGE_COUPON,
    CREATE_COUPON,
    LIMIT,
    AnyRequest,
    check_window,
    coupon_cursor,
    decode_body,
    encode_cursor,
    page_limit,
    require_coupon_name,
)
from flashsale.http.schemas import (
    ChangeCouponRequest,
    CouponItem,
    CouponResponse,
    CouponsPageResponse,
    CreateCouponRequest,
    shown,
)
from flashsale.http.spool import spooled
from flashsale.service.ports import KEEP, CouponChange, CouponSnapshot, CouponState, Keep, NewCoupon

log = logging.getLogger("flashsale.http")

CHUNK_BYTES = 256 * 1024
_ENCODER = msgspec.json.Encoder()


class CouponController(Resource):
    path = "/api/coupons"
    tags = ["coupons"]  # noqa: RUF012 - Litestar declares it as an instance attribute

    @post(
        "/",
        status_code=HTTP_201_CREATED,
        summary="Create a coupon with a fixed stock",
        **admin_only(
            *BODY_FAILURES,
            COUPON_EXISTS,
            *RAFFLE_FAILURES,
            SERVICE_UNAVAILABLE,
            body=CreateCouponRequest,
            keyed=True,
            responses={201: ResponseSpec(CouponResponse, description="created")},
        ),
    )
    async def create_coupon(self, request: AnyRequest) -> Response[Any]:
        data = await decode_body(request, CREATE_COUPON)
        check_window(data.starts_at, data.ends_at)
        key = await request_key(request, idempotency.CREATE_COUPON)
        coupon = NewCoupon(
            *(data.name, data.amount, data.starts_at, data.ends_at, data.hold_seconds),
            *(data.allocation, data.draw_at),
        )
        return await write_coupons(
            request,
            key,
            HTTP_201_CREATED,
            created_body,
            lambda coupons, once, actor: coupons.create_coupon(coupon, once, actor=actor),
        )

    @patch(
        "/{name:str}",
        summary="Change a coupon: restock or cut, window, pause or resume, hold",
        **admin_only(
            *BODY_FAILURES,
            COUPON_NOT_FOUND,
            AMOUNT_BELOW_CLAIMED,
            *RAFFLE_FAILURES,
            RAFFLE_ENTRIES_EXIST,
            RAFFLE_DRAWING,
            SERVICE_UNAVAILABLE,
            body=ChangeCouponRequest,
            keyed=True,
            responses={200: ResponseSpec(CouponItem, description="the coupon as changed")},
        ),
    )
    async def change_coupon(self, request: AnyRequest, name: str) -> Response[Any]:
        """``amount`` is the new total (``remaining_amount`` moves by the
        difference); ``active: false`` pauses, ``true`` resumes; ``null``
        clears ``starts_at``, ``ends_at`` or ``hold_seconds`` (a new hold
        applies to claims made after the change)."""
        require_coupon_name(name)
        data = await decode_body(request, CHANGE_COUPON)
        starts, ends = _or_keep(data.starts_at), _or_keep(data.ends_at)
        check_window(None if starts is KEEP else starts, None if ends is KEEP else ends)
        key = await request_key(request, idempotency.CHANGE_COUPON)
        change = CouponChange(
            amount=None if data.amount is msgspec.UNSET else data.amount,
            active=None if data.active is msgspec.UNSET else data.active,
            starts_at=starts,
            ends_at=ends,
            hold_seconds=_or_keep(data.hold_seconds),
            allocation=None if data.allocation is msgspec.UNSET else data.allocation,
            draw_at=KEEP if data.draw_at is msgspec.UNSET else data.draw_at,
        )
        return await write_coupons(
            request,
            key,
            HTTP_200_OK,
            coupon_item,
            lambda coupons, once, actor: coupons.change_coupon(name, change, once, actor=actor),
        )

    @get(
        "/",
        summary="Coupons with their stock, by name, a page at a time",
        **documented(INVALID_REQUEST, SERVICE_UNAVAILABLE),
    )
    async def list_coupons(
        self, state: State, limit: str | None = LIMIT, after: str | None = AFTER
    ) -> CouponsPageResponse:
        reads = services_of(state).reads
        page = await reads.coupons_page(after=coupon_cursor(after), limit=page_limit(limit))
        return CouponsPageResponse(
            coupons=[coupon_item(c) for c in page.coupons],
            next=encode_cursor(page.next_after),
        )

    @get(
        "/{name:str}",
        summary="A coupon with its remaining stock and claimers (streamed)",
        **documented(
            COUPON_NOT_FOUND,
            SERVICE_UNAVAILABLE,
            responses={200: ResponseSpec(CouponResponse, description="the coupon, streamed")},
        ),
    )
    async def get_coupon(self, request: AnyRequest, state: State, name: str) -> Response[Any]:
        """The same JSON as ever, written a few hundred KB at a time from one
        database snapshot, so a coupon with a million claimers costs neither
        a million-element list nor a 15 MB buffer; spooled to a file as fast
        as the database gives it (http/spool.py), so a slow reader holds no
        connection. 404 is decided before any byte is sent; later failures
        can only cut the body short. With HIDE_CLAIMERS=true an anonymous
        reader gets an empty ``claimed_by``."""
        claimers = sees_claimers(request)
        require_coupon_name(name)
        spools = spools_of(state)
        spools.check()
        snapshot = await services_of(state).reads.open_coupon(name)
        chunks = coupon_json(snapshot, claimers=claimers)
        first = await anext(chunks, b"")
        second = await anext(chunks, None)
        if second is None:
            # The whole answer in one chunk (every small coupon): a plain
            # response, without a streaming task and its disconnect listener.
            return Response(first, media_type=MediaType.JSON)
        return Stream(spooled(_chained((first, second), chunks), spools), media_type=MediaType.JSON)


T = TypeVar("T")


async def _chained(
    taken: tuple[bytes, ...], rest: AsyncGenerator[bytes, None]
) -> AsyncIterator[bytes]:
    async with aclosing(rest):  # its snapshot closes when the answer ends, however
        for chunk in taken:
            yield chunk
        async for chunk in rest:
            yield chunk


async def _none() -> AsyncIterator[list[str]]:
    return
    yield


def _or_keep(value: T | msgspec.UnsetType) -> T | Keep:
    return KEEP if value is msgspec.UNSET else value


def created_body(coupon: CouponState) -> CouponResponse:
    """A new coupon: no claimers yet."""
    return shown(CouponResponse, coupon, claimed_by=[])


def coupon_item(coupon: CouponState) -> CouponItem:
    return shown(CouponItem, coupon)


def _item_fields(coupon: CouponState, names: tuple[str, ...]) -> dict[str, Any]:
    """Some of the coupon's fields, by name (the streamed body's parts)."""
    return {name: getattr(coupon, name) for name in names}


# The streamed body is CouponResponse written in parts: the fields around
# claimed_by, in the order the schema declares them.
_FIELDS = CouponResponse.__struct_fields__
_HEAD = _FIELDS[: _FIELDS.index("claimed_by")]
_TAIL = _FIELDS[_FIELDS.index("claimed_by") + 1 :]


def _head(snapshot: CouponSnapshot) -> bytes:
    # '{"name":..,"remaining_amount":N}' -> '{..,"remaining_amount":N,"claimed_by":['
    return _ENCODER.encode(_item_fields(snapshot.header, _HEAD))[:-1] + b',"claimed_by":['


def _tail(snapshot: CouponSnapshot) -> bytes:
    """'],"status":..,"redeemed":N}': the fields after claimed_by."""
    return b"]," + _ENCODER.encode(_item_fields(snapshot.header, _TAIL))[1:]


async def coupon_json(
    snapshot: CouponSnapshot, *, claimers: bool = True
) -> AsyncGenerator[bytes, None]:
    buffer = bytearray(_head(snapshot))
    first = True
    try:
        async for batch in snapshot.user_id_batches() if claimers else _none():
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
    buffer += _tail(snapshot)
    yield bytes(buffer)
