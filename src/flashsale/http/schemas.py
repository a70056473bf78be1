"""What comes in and what goes out, as msgspec structs. Constraints here are
the validation rules; msgspec enforces them while decoding, strictly (no
booleans or strings where an integer is declared)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

import msgspec

from flashsale.service import ports as service_ports

# ASCII letters, digits, "_", "-", "." - safe in a URL path segment as is.
CouponName = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=64,
        # "(?!\n)": Python's "$" (msgspec's) also matches before a final newline.
        pattern=r"^[A-Za-z0-9_.\-]+$(?!\n)",
        description="1-64 ASCII letters, digits, '_', '-' or '.'",
        examples=["PROMO_SUPER"],
    ),
]
# Any text without control characters (C0, DEL, C1): PostgreSQL text cannot
# hold NUL, and control characters in ids only ever mean a broken client.
_NOT_IN_IDS = r"\x00-\x1f\x7f-\x9f\u2028\u2029"
UserId = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=128,
        # ... nor line/paragraph separators, which some locales' [[:cntrl:]]
        # (the table's CHECK) counts; and at least one character that is not
        # white space: "   " is no one's id.
        pattern=rf"^[^{_NOT_IN_IDS}]*[^\s{_NOT_IN_IDS}][^{_NOT_IN_IDS}]*$(?!\n)",
        description="1-128 characters, no control characters, not only white space",
        examples=["user_12345"],
    ),
]
MAX_AMOUNT = 2_147_483_647  # the column's own limit (a 32-bit integer)
Amount = Annotated[
    int,
    msgspec.Meta(ge=1, le=MAX_AMOUNT, description="The coupon's total stock", examples=[100]),
]
# RFC 3339 with an offset: a time without one names no instant.
Timestamp = Annotated[
    datetime,
    msgspec.Meta(tz=True, description="RFC 3339 with an offset", examples=["2026-12-24T10:00:00Z"]),
]
HoldSeconds = Annotated[
    int,
    msgspec.Meta(
        ge=10,
        le=86_400,
        description="A claim is a hold that must be redeemed within this many seconds",
        examples=[30],
    ),
]


Allocation = Literal["first_come", "raffle"]


class Body(msgspec.Struct):
    """Base of every request and response body."""


B = TypeVar("B", bound=Body)


def shown(body: type[B], value: object, **given: Any) -> B:
    """``body`` with each of its fields not ``given`` read from the same-named
    attribute of ``value`` (a use case's value: a coupon, a claim)."""
    read = {name: getattr(value, name) for name in body.__struct_fields__ if name not in given}
    return body(**read, **given)


class AdminBody(Body, forbid_unknown_fields=True):
    """An admin request's body: a field it does not take is a 400, not
    silently ignored (a misspelt "actve": false would pause nothing). The
    claim stays lenient: the original contract's clients may send more."""


class CreateCouponRequest(AdminBody):
    name: CouponName
    amount: Amount
    starts_at: Timestamp | None = None
    ends_at: Timestamp | None = None
    hold_seconds: HoldSeconds | None = None
    # A raffle (issue 27): entries until draw_at, then one draw anyone can check.
    allocation: Allocation = "first_come"
    draw_at: Timestamp | None = None


class ChangeCouponRequest(AdminBody):
    """Every field optional; a field left out stays as it is, ``null``
    clears ``starts_at``, ``ends_at`` or ``hold_seconds``."""

    amount: Amount | msgspec.UnsetType = msgspec.UNSET
    starts_at: Timestamp | msgspec.UnsetType | None = msgspec.UNSET
    ends_at: Timestamp | msgspec.UnsetType | None = msgspec.UNSET
    active: bool | msgspec.UnsetType = msgspec.UNSET
    hold_seconds: HoldSeconds | msgspec.UnsetType | None = msgspec.UNSET
    allocation: Allocation | msgspec.UnsetType = msgspec.UNSET  # until the first entry
    draw_at: Timestamp | msgspec.UnsetType = msgspec.UNSET


class ClaimRequest(Body):
    user_id: UserId
    coupon_name: CouponName


class OwnClaimRequest(Body):
    """An end user's claim (CLAIM_AUTH=user): user_id may be left out, and
    is then the token's sub (http/claim_endpoint.py)."""

    coupon_name: CouponName
    user_id: UserId | None = None


CouponStatus = Literal[
    "scheduled", "active", "paused", "sold_out", "ended", "entries_open", "drawing", "drawn"
]


class CouponResponse(Body):
    name: str
    amount: int
    remaining_amount: int
    claimed_by: list[str]
    status: CouponStatus
    starts_at: datetime | None
    ends_at: datetime | None
    hold_seconds: int | None
    redeemed: int
    # A raffle's (null or first_come otherwise): docs/raffle.md.
    allocation: str
    draw_at: datetime | None
    draw_commitment: str | None  # hex SHA-256 of the seed, from creation
    draw_seed: str | None  # hex, once drawn
    entries: int | None
    draw_winners: int | None
    waitlisted: int | None


class ClaimResponse(Body):
    user_id: str
    coupon_name: str
    message: str = "coupon claimed"
    claimed_at: datetime | None = None
    expires_at: datetime | None = None  # null without holds


class ClaimBody(Body):
    """One live claim."""

    user_id: str
    coupon_name: str
    status: Literal["held", "redeemed"]
    claimed_at: datetime
    expires_at: datetime | None
    redeemed_at: datetime | None


class EnteredResponse(Body):
    """A raffle's entry (202): the same answer however often it is sent."""

    user_id: str
    coupon_name: str
    draw_at: datetime
    message: str = "entered the raffle"


class EntryBody(Body):
    """A raffle entrant without a claim: entered (before the draw) or waitlisted."""

    user_id: str
    coupon_name: str
    status: Literal["entered", "waitlisted"]
    place: int | None


class EntryItem(Body):
    entrant: str  # hex SHA-256 of the user id in UTF-8
    place: int | None  # null until the draw is done


class EntriesPageResponse(Body):
    entries: list[EntryItem]
    next: str | None


class UserClaimsPageResponse(Body):
    claims: list[ClaimBody]  # newest first
    next: str | None


class HealthResponse(Body):
    status: str
    database: str


class ErrorResponse(Body):
    """Every failure: ``error`` is a stable code (the two 409s of a claim
    differ here), ``message`` is for people."""

    error: str
    message: str


class ClaimItem(Body):
    user_id: str
    claimed_at: datetime


class ClaimsPageResponse(Body):
    claims: list[ClaimItem]
    next: str | None  # cursor for ?after=; null on the last page


class CouponItem(Body):
    """A coupon without its claimers (the list's items, a change's answer)."""

    name: str
    amount: int
    remaining_amount: int
    status: CouponStatus
    starts_at: datetime | None
    ends_at: datetime | None
    hold_seconds: int | None
    redeemed: int
    # A raffle's (null or first_come otherwise): docs/raffle.md.
    allocation: str
    draw_at: datetime | None
    draw_commitment: str | None  # hex SHA-256 of the seed, from creation
    draw_seed: str | None  # hex, once drawn
    entries: int | None
    draw_winners: int | None
    waitlisted: int | None


class CouponsPageResponse(Body):
    coupons: list[CouponItem]
    next: str | None


# The event types (one list: the use cases' and the API's).
EventType = service_ports.EventType


class EventBody(Body):
    """One change: ``seq`` is the coupon's own number (1, 2, 3, ... with no
    gaps, in commit order); ``data`` holds what changed (a coupon event's
    fields, a release's reason)."""

    id: int
    coupon_name: str
    seq: int
    type: EventType
    user_id: str | None  # null for coupon events
    at: datetime  # the database's time of the change
    data: dict[str, Any]


class EventsPageResponse(Body):
    events: list[EventBody]
    next: str  # cursor for ?after=: the feed has no last page, ask again later


WEBHOOK_EVENTS: list[EventType] = [
    "coupon_created", "coupon_changed", "claimed", "released", "expired", "redeemed",
    "waitlisted", "raffle_drawn",
]  # fmt: skip
WebhookUrl = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=2048,
        pattern=r"^[hH][tT][tT][pP][sS]?://[\x21-\x7e]+$(?!\n)",
        description="An http:// or https:// URL the events are POSTed to",
        examples=["https://orders.example/hooks/flashsale"],
    ),
]
# The Standard Webhooks form: "whsec_" and the base64 of the key's 24-64 bytes
# (the handler checks the decoded length).
WebhookSecret = Annotated[
    str,
    msgspec.Meta(
        min_length=38,
        max_length=94,
        pattern=r"^whsec_[A-Za-z0-9+/]+={0,2}$(?!\n)",
        description="whsec_ + base64 of 24-64 random bytes, the HMAC-SHA256 key; "
        "made by the service when absent, shown once",
        examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
    ),
]
PreviousValidSeconds = Annotated[
    int,
    msgspec.Meta(
        ge=0,
        le=30 * 86400,
        description="seconds the replaced secret keeps signing beside the new one",
    ),
]


class CreateWebhookRequest(AdminBody):
    url: WebhookUrl
    secret: WebhookSecret | None = None
    events: Annotated[list[EventType], msgspec.Meta(min_length=1, max_length=64)] = msgspec.field(
        default_factory=lambda: list(WEBHOOK_EVENTS)
    )


class WebhookBody(Body):
    """An endpoint and how its deliveries go; never its secret. ``failures``:
    failed attempts in a row of its most-failing undelivered event;
    ``pending``: coupons with events still to deliver to it."""

    id: int
    url: str
    events: list[EventType]
    status: Literal["enabled", "disabled"]
    created_at: datetime
    failures: int
    last_error: str | None
    last_error_at: datetime | None
    last_delivered_at: datetime | None
    disabled_at: datetime | None
    disabled_reason: str | None
    pending: int
    backlog: int  # events still to deliver, at most (queued minus delivered seqs)
    next_attempt_at: datetime | None  # when the first of them is due; null: none
    lag_seconds: float | None  # age of the oldest event not delivered yet
    # Who registered it and who made its last change (registration, rotation,
    # enabling, replay), and when: {"kind": "operator", "name": "admin"}.
    created_by: dict[str, str] | None
    changed_by: dict[str, str] | None
    changed_at: datetime | None


class CreatedWebhookBody(WebhookBody):
    """The endpoint and its secret: the only answer that ever shows it."""

    secret: str


class WebhooksResponse(Body):
    webhooks: list[WebhookBody]
    next: str | None  # cursor for ?after=; null on the last page


class ReplayRequest(AdminBody):
    """Where a replay starts: an event id, a time, or both (the later wins);
    never before the endpoint was registered."""

    from_event_id: Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)] = 1
    from_time: Annotated[datetime, msgspec.Meta(tz=True)] | None = None


class ReplayBody(Body):
    id: int
    since: datetime  # the earliest event time replayed
    from_event_id: int
    streams: int  # coupons whose events are delivered again


class RotateSecretRequest(AdminBody):
    secret: WebhookSecret | None = None
    previous_valid_seconds: PreviousValidSeconds = 86400


class RotatedSecretBody(Body):
    """The new secret (shown in this answer only) and until when the one it
    replaced still signs deliveries beside it."""

    id: int
    secret: str
    previous_valid_until: datetime
