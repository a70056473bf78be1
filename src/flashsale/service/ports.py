"""What the use cases need from storage, and the plain values they get back.
``flashsale.storage`` implements these Protocols; nothing here knows SQL.
(The claim engine's own port is ``flashsale.claims.ports.ClaimStore``.)"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, Generic, Literal, Protocol, TypeVar, overload

from flashsale.domain import Caller, DomainError, IdempotencyKey

CouponStatus = Literal[
    "scheduled", "active", "paused", "sold_out", "ended", "entries_open", "drawing", "drawn"
]
ClaimStatus = Literal["held", "redeemed"]
EventType = Literal[
    "coupon_created",
    "coupon_changed",
    "claimed",
    "released",
    "expired",
    "redeemed",
    "waitlisted",
    "raffle_drawn",
]


@dataclass(frozen=True, slots=True)
class CouponState:
    """A coupon as clients see it: a hold past its expiry is gone (its unit
    back in ``remaining_amount``), the status is decided by PostgreSQL's clock."""

    name: str
    amount: int
    remaining_amount: int
    status: CouponStatus
    starts_at: datetime | None
    ends_at: datetime | None
    hold_seconds: int | None
    redeemed: int
    # A raffle's (issue 27); a first-come coupon's are first_come and None.
    allocation: str = "first_come"
    draw_at: datetime | None = None
    draw_commitment: str | None = None
    draw_seed: str | None = None
    entries: int | None = None
    draw_winners: int | None = None
    waitlisted: int | None = None


CouponHeader = CouponState  # the head of a streamed read
CouponStock = CouponState  # an item of the coupons list


@dataclass(frozen=True, slots=True)
class NewCoupon:
    """A coupon to create: its name, stock, sale window and hold (None: none)."""

    name: str
    amount: int
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    hold_seconds: int | None = None
    allocation: str = "first_come"
    draw_at: datetime | None = None
    seed: bytes | None = None  # a raffle's secret 32 bytes (the service draws them)


@dataclass(frozen=True, slots=True)
class EntryView:
    """A raffle entrant who holds no claim: entered before the draw,
    waitlisted (with its 1-based place) after it."""

    user_id: str
    coupon_name: str
    status: Literal["entered", "waitlisted"]
    place: int | None


@dataclass(frozen=True, slots=True)
class EntryRow:
    entrant: bytes
    place: int | None


@dataclass(frozen=True, slots=True)
class ClaimView:
    """One live claim: held (until ``expires_at``, if set) or redeemed."""

    claim_id: int
    user_id: str
    coupon_name: str
    status: ClaimStatus
    claimed_at: datetime
    expires_at: datetime | None
    redeemed_at: datetime | None


class Keep(Enum):
    """A field a change leaves as it is (None means: clear it)."""

    KEEP = "keep"


KEEP = Keep.KEEP


@dataclass(frozen=True, slots=True)
class CouponChange:
    amount: int | None = None  # the new total; None keeps it
    active: bool | None = None
    starts_at: datetime | Keep | None = KEEP
    ends_at: datetime | Keep | None = KEEP
    hold_seconds: int | Keep | None = KEEP
    allocation: str | None = None  # None keeps it
    draw_at: datetime | Keep = KEEP
    seed: bytes | None = None  # for a change to raffle (a raffle keeps its seed)


@dataclass(frozen=True, slots=True)
class ClaimRow:
    claim_id: int
    user_id: str
    claimed_at: datetime


@dataclass(frozen=True, slots=True)
class CouponActivity:
    name: str
    amount: int
    remaining_amount: int
    recent_claimers: list[str]  # newest first
    status: CouponStatus = "active"
    holds: int = 0  # live claims not redeemed yet
    redeemed: int = 0
    allocation: str = "first_come"
    entries: int | None = None  # a raffle's entries so far (None: first come)
    waitlisted: int | None = None  # a drawn raffle's users still waiting


class CouponSnapshot:
    """A coupon and its claimers as of one snapshot, read on one connection
    that is held until the claimers are read.

    The rows come from a generator already started inside its transaction: it
    releases the connection when it ends, fails or is closed, and the event
    loop closes it should its reader drop it unread."""

    def __init__(self, header: CouponHeader, batches: AsyncGenerator[list[str], None]) -> None:
        self.header = header
        self._batches = batches

    def user_id_batches(self) -> AsyncGenerator[list[str], None]:
        """The claimers' user ids in claim order, in batches; iterate once."""
        return self._batches

    async def close(self) -> None:
        await self._batches.aclose()


@dataclass(frozen=True, slots=True)
class Answer:
    """A keyed request's answer as its client gets it: the status and the
    exact body bytes, stored with the request's effect; ``replayed`` when a
    retry gets the stored one back."""

    status: int
    body: bytes
    replayed: bool = False

    @property
    def kept(self) -> bool:
        """Whether the answer is stored with its key: not a refusal of the
        request as sent (400, 401, 403, 413, 415, 422, 429: nothing ran, and
        the client may correct it and retry with the same key); a 404 or a
        409 is the request's answer and is kept."""
        return self.status not in NOT_KEPT


NOT_KEPT = frozenset({400, 401, 403, 413, 415, 422, 429})

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Once(Generic[R]):
    """A write to run once per idempotency key: the key, and how the write's
    result (or the client's error) becomes the answer stored with the effect.
    ``render`` runs inside the writing transaction, so it must be pure."""

    key: IdempotencyKey
    render: Callable[[R | DomainError], Answer]


@dataclass(frozen=True, slots=True, order=True)
class FeedPosition:
    """A place in the global events feed, which is ordered by (xid, event_id):
    the writing transaction's id, then the event's own."""

    xid: int
    event_id: int


FEED_START = FeedPosition(0, 0)  # before every event


@dataclass(frozen=True, slots=True)
class Event:
    """One change of a coupon or of one of its claims."""

    event_id: int
    xid: int  # the transaction that wrote it
    coupon_name: str
    seq: int  # the coupon's own number: 1, 2, 3, ... in commit order
    type: EventType
    user_id: str | None  # None for coupon events
    at: datetime
    data: dict[str, Any]

    @property
    def position(self) -> FeedPosition:
        return FeedPosition(self.xid, self.event_id)


class CouponWriter(Protocol):
    """The writes that are not claims (those go through the claim engine).

    Each takes an optional ``once``: the request's idempotency key and how
    its answer is rendered. Without it the write returns its result and
    raises the client's error; with it the first request with the key runs
    and stores its answer (client errors included) in the transaction of its
    effect, and a retry gets that answer back, replayed, changing nothing:
    IdempotencyKeyReused for another request with the key,
    IdempotencyKeyInUse when its first request is still undecided too long."""

    async def ping(self) -> None: ...

    @overload
    async def create_coupon(
        self, coupon: NewCoupon, once: None = None, *, actor: Caller | None = None
    ) -> CouponState: ...
    @overload
    async def create_coupon(
        self, coupon: NewCoupon, once: Once[CouponState], *, actor: Caller | None = None
    ) -> Answer:
        """CouponExists when the name is taken; InvalidCoupon when ends_at is
        not in the future by the database's clock. ``actor``: who made the
        change, recorded in its event (as in every write here)."""

    @overload
    async def change_coupon(
        self, name: str, change: CouponChange, once: None = None, *, actor: Caller | None = None
    ) -> CouponState: ...
    @overload
    async def change_coupon(
        self,
        name: str,
        change: CouponChange,
        once: Once[CouponState],
        *,
        actor: Caller | None = None,
    ) -> Answer:
        """CouponNotFound, AmountBelowClaimed, InvalidCoupon."""

    @overload
    async def redeem_claim(
        self, *, coupon_name: str, user_id: str, once: None = None, actor: Caller | None = None
    ) -> ClaimView: ...
    @overload
    async def redeem_claim(
        self,
        *,
        coupon_name: str,
        user_id: str,
        once: Once[ClaimView],
        actor: Caller | None = None,
    ) -> Answer:
        """CouponNotFound, ClaimNotFound, AlreadyRedeemed."""


class KeyPurger(Protocol):
    async def purge_idempotency_keys(self, *, older_than: int, limit: int) -> int:
        """Deletes up to ``limit`` keys older than ``older_than`` seconds; how many."""


class HoldSweeper(Protocol):
    async def expire_holds(self) -> int:
        """Deletes due holds (each exactly once across every worker and
        instance), returning their units; how many it expired."""


class CouponReader(Protocol):
    async def open_snapshot(self, name: str) -> CouponSnapshot | None:
        """The coupon read in a fresh snapshot, claimers still to come; None
        (nothing held) when there is no such coupon."""

    async def claims_page(self, name: str, *, after: int, limit: int) -> list[ClaimRow] | None:
        """Up to ``limit`` claims after claim ``after``; None: no such coupon."""

    async def coupons_page(self, *, after: str, limit: int) -> list[CouponStock]:
        """Up to ``limit`` coupons named after ``after``, by name."""

    async def find_claim(self, *, coupon_name: str, user_id: str) -> ClaimView | EntryView | None:
        """The user's live claim, else a raffle entrant's entry (entered or
        waitlisted); None when there is neither; CouponNotFound."""

    async def entries_page(
        self, name: str, *, after: bytes | None, limit: int
    ) -> list[EntryRow] | None:
        """Up to ``limit`` raffle entrants after entrant ``after``: by entrant
        until the draw is done, then in draw order with places; None: no such coupon."""

    async def user_claims_page(self, user_id: str, *, before: int, limit: int) -> list[ClaimView]:
        """Up to ``limit`` of the user's live claims with ids below ``before``, newest first."""


class ActivityReader(Protocol):
    async def recent_activity(self, *, coupons: int, claimers: int) -> list[CouponActivity]:
        """Up to ``coupons`` coupons, most recently claimed first, each with
        its last ``claimers`` claimers."""


class EventReader(Protocol):
    async def events_page(self, *, after: FeedPosition, limit: int) -> list[Event]:
        """Up to ``limit`` events after ``after`` in feed order, only from
        transactions older than every one still running (so none can appear
        behind them later)."""

    async def coupon_events_page(self, name: str, *, after: int, limit: int) -> list[Event] | None:
        """Up to ``limit`` of the coupon's events with seq above ``after``;
        None: no such coupon."""
