"""Claims: ``POST /api/coupons/claim`` takes one, ``GET
/api/coupons/{name}/claims`` lists a coupon's claims a page at a time (keyset
pages: stable under concurrent claims, as cheap on the last page as on the
first), ``/api/coupons/{name}/claims/{user_id}`` reads, releases (DELETE) and
redeems one.

The claim and the release are answered by http/claim_endpoint.py before
Litestar sees them; their declarations here document them and let Litestar
answer their other methods (405, OPTIONS)."""

from __future__ import annotations

from typing import Any, NoReturn

from litestar import Response, delete, get, post
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from litestar.status_codes import HTTP_200_OK

from flashsale.http import idempotency
from flashsale.http.allow import with_options
from flashsale.http.auth import (
    Unauthorized,
    access_of,
    connection_caller,
    require_reader_of,
    sees_claimers,
    staff_only,
)
from flashsale.http.context import services_of
from flashsale.http.idempotency import request_key, write_coupons
from flashsale.http.openapi import (
    ALREADY_CLAIMED,
    ALREADY_REDEEMED,
    BODY_FAILURES,
    CLAIM_NOT_FOUND,
    COUPON_NOT_FOUND,
    ENTRIES_CLOSED,
    FORBIDDEN,
    INVALID_REQUEST,
    NOT_STARTED,
    PAUSED,
    RAFFLE_DRAWN,
    SALE_ENDED,
    SERVICE_UNAVAILABLE,
    SOLD_OUT,
    UNAUTHORIZED,
    documented,
)
from flashsale.http.requests import (
    AFTER,
    LIMIT,
    AnyRequest,
    claim_cursor,
    encode_cursor,
    no_claim,
    page_limit,
    path_coupon_name,
    path_user_id,
    require_coupon_name,
)
from flashsale.http.schemas import (
    ClaimBody,
    ClaimItem,
    ClaimRequest,
    ClaimResponse,
    ClaimsPageResponse,
    EnteredResponse,
    EntryBody,
    shown,
)
from flashsale.service.ports import ClaimView, EntryView

CLAIM_PATH = "/api/coupons/claim"
CEILING_PATH = "/bench/claim-ceiling"  # flashsale bench only: a claim minus the database
RELEASE_TEMPLATE = "/api/coupons/{name}/claims/{user_id}"  # as Litestar's router names it


@post(
    CLAIM_PATH,
    status_code=HTTP_200_OK,
    summary="Claim a coupon for a user",
    tags=["coupons"],
    **documented(
        *BODY_FAILURES,
        COUPON_NOT_FOUND,
        ALREADY_CLAIMED,
        SOLD_OUT,
        NOT_STARTED,
        SALE_ENDED,
        PAUSED,
        ENTRIES_CLOSED,
        RAFFLE_DRAWN,
        SERVICE_UNAVAILABLE,
        UNAUTHORIZED,
        FORBIDDEN,
        body=ClaimRequest,
        keyed=True,
        optional_auth=True,
        responses={
            200: ResponseSpec(ClaimResponse, description="claimed, and committed"),
            202: ResponseSpec(EnteredResponse, description="a raffle's entry, committed"),
        },
    ),
)
async def claim_coupon() -> Response[Any]:
    """Declared for the document and the router; ClaimEndpoint
    (http/claim_endpoint.py) answers every POST to this path before Litestar
    sees it."""
    _never_routed()


def _never_routed() -> NoReturn:
    raise RuntimeError("POST /api/coupons/claim is answered by ClaimEndpoint")


@get(
    "/api/coupons/{name:str}/claims",
    summary="A coupon's claims in claim order, a page at a time",
    tags=["coupons"],
    **documented(
        INVALID_REQUEST,
        COUPON_NOT_FOUND,
        SERVICE_UNAVAILABLE,
        UNAUTHORIZED,
        FORBIDDEN,
        optional_auth=True,
    ),
)
async def list_claims(
    request: AnyRequest,
    state: State,
    name: str,
    limit: str | None = LIMIT,
    after: str | None = AFTER,
) -> ClaimsPageResponse:
    if not sees_claimers(request):
        raise Unauthorized("HIDE_CLAIMERS=true: a coupon's claims need a bearer token")
    require_coupon_name(name)
    reads = services_of(state).reads
    page = await reads.claims_page(name, after=claim_cursor(after), limit=page_limit(limit))
    return ClaimsPageResponse(
        claims=[ClaimItem(c.user_id, c.claimed_at) for c in page.claims],
        next=encode_cursor(page.next_after),
    )


# One user's claim. {user_id} arrives percent-encoded (http/paths.py keeps
# '%2F' in one segment); the handlers decode it and the coupon name.
ONE_CLAIM = "/api/coupons/{name:str}/claims/{user_id:str}"
# What a release or a redeem may answer besides its success.
_CLAIM_WRITE_FAILURES = (
    COUPON_NOT_FOUND,
    CLAIM_NOT_FOUND,
    ALREADY_REDEEMED,
    SERVICE_UNAVAILABLE,
)


def claim_body(claim: ClaimView) -> ClaimBody:
    return shown(ClaimBody, claim)


def claim_key(name: str, user_id: str) -> tuple[str, str]:
    return path_coupon_name(name), path_user_id(user_id, missing=no_claim())


@get(
    ONE_CLAIM,
    summary="One user's live claim on a coupon (held or redeemed), or a raffle entrant's place",
    tags=["claims"],
    **documented(
        COUPON_NOT_FOUND,
        CLAIM_NOT_FOUND,
        SERVICE_UNAVAILABLE,
        UNAUTHORIZED,
        FORBIDDEN,
        optional_auth=True,
    ),
)
async def read_claim(
    request: AnyRequest, state: State, name: str, user_id: str
) -> ClaimBody | EntryBody:
    """A raffle's entrant without a claim: ``entered`` before the draw is
    done, ``waitlisted`` with its place after it."""
    coupon_name, user = claim_key(name, user_id)
    require_reader_of(connection_caller(request), access_of(state), user)
    claim = await services_of(state).reads.claim(coupon_name=coupon_name, user_id=user)
    if isinstance(claim, EntryView):
        return EntryBody(claim.user_id, claim.coupon_name, claim.status, claim.place)
    return claim_body(claim)


@delete(
    ONE_CLAIM,
    summary="Release a held claim: its unit is back in the stock (the order was cancelled)",
    tags=["claims"],
    **staff_only(
        *_CLAIM_WRITE_FAILURES,
        keyed=True,
    ),
)
async def release_claim() -> None:
    """Declared for the document and the router (OPTIONS, 405); ClaimEndpoint
    answers every DELETE of this path before Litestar sees it."""
    raise RuntimeError("DELETE of one claim is answered by ClaimEndpoint")


@post(
    ONE_CLAIM + "/redeem",
    status_code=HTTP_200_OK,
    summary="Redeem a held claim (the checkout used the coupon): it never expires then",
    tags=["claims"],
    **staff_only(
        *_CLAIM_WRITE_FAILURES,
        keyed=True,
        responses={200: ResponseSpec(ClaimBody, description="the claim, redeemed")},
    ),
)
async def redeem_claim(request: AnyRequest, name: str, user_id: str) -> Response[Any]:
    coupon_name, user = claim_key(name, user_id)
    key = await request_key(request, idempotency.REDEEM_CLAIM, user)
    return await write_coupons(
        request,
        key,
        HTTP_200_OK,
        claim_body,
        lambda coupons, once, actor: coupons.redeem_claim(
            coupon_name=coupon_name, user_id=user, once=once, actor=actor
        ),
    )


CLAIM_HANDLERS = with_options([claim_coupon, list_claims, read_claim, release_claim, redeem_claim])
