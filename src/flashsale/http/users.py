"""``/api/users/{user_id}/claims``: a user's live claims across coupons,
newest first, a page at a time (keyset on the claim id, like the other
lists). The user id arrives percent-encoded (http/paths.py)."""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.datastructures import State

from flashsale.http.auth import access_of, connection_caller, require_reader_of
from flashsale.http.claims import claim_body
from flashsale.http.context import services_of
from flashsale.http.errors import InvalidRequest
from flashsale.http.openapi import (
    FORBIDDEN,
    INVALID_REQUEST,
    SERVICE_UNAVAILABLE,
    UNAUTHORIZED,
    documented,
)
from flashsale.http.requests import (
    AFTER,
    LIMIT,
    encode_cursor,
    page_limit,
    path_user_id,
    user_claim_cursor,
)
from flashsale.http.schemas import UserClaimsPageResponse


@get(
    "/api/users/{user_id:str}/claims",
    summary="A user's live claims across coupons, newest first, a page at a time",
    tags=["claims"],
    **documented(INVALID_REQUEST, SERVICE_UNAVAILABLE, UNAUTHORIZED, FORBIDDEN, optional_auth=True),
)
async def user_claims(
    request: Request[Any, Any, Any],
    state: State,
    user_id: str,
    limit: str | None = LIMIT,
    after: str | None = AFTER,
) -> UserClaimsPageResponse:
    user = path_user_id(user_id, missing=InvalidRequest("user_id " + _USER_RULE))
    require_reader_of(connection_caller(request), access_of(state), user)
    reads = services_of(state).reads
    page = await reads.user_claims_page(
        user, before=user_claim_cursor(after), limit=page_limit(limit)
    )
    return UserClaimsPageResponse(
        claims=[claim_body(claim) for claim in page.claims],
        next=encode_cursor(page.next_before),
    )


_USER_RULE = "must be 1-128 characters with no control characters, not only white space"

USER_HANDLERS = [user_claims]
