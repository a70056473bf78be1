"""What the service knows about coupons and claims, free of HTTP and SQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class ClaimOutcome(StrEnum):
    CLAIMED = "claimed"
    ALREADY_CLAIMED = "already_claimed"
    SOLD_OUT = "sold_out"
    NOT_FOUND = "not_found"
    NOT_STARTED = "not_started"
    SALE_ENDED = "sale_ended"
    PAUSED = "paused"
    KEY_REUSED = "idempotency_key_reused"  # the claim's key came with another request
    # A raffle's answers (issue 27): an entry recorded (the decision's
    # expires_at is the draw time), entries closed until the draw is done,
    # and after it, a claim refused while users wait.
    ENTERED = "entered"
    ENTRIES_CLOSED = "entries_closed"
    RAFFLE_DRAWN = "raffle_drawn"


class ReleaseOutcome(StrEnum):
    """What a release of one user's claim came to."""

    RELEASED = "released"
    CLAIM_NOT_FOUND = "claim_not_found"
    ALREADY_REDEEMED = "already_redeemed"
    NOT_FOUND = "not_found"  # no such coupon
    KEY_REUSED = "idempotency_key_reused"


@dataclass(frozen=True, slots=True)
class ClaimDecision:
    """A claim's outcome and, when granted, its times (PostgreSQL's clock);
    ``expires_at`` is None unless the coupon has holds."""

    outcome: ClaimOutcome
    claimed_at: datetime | None = None
    expires_at: datetime | None = None
    replayed: bool = False  # an Idempotency-Key's stored decision, answered again


@dataclass(frozen=True, slots=True)
class ReleaseDecision:
    """A keyed release's outcome; ``replayed`` when its key's stored one."""

    outcome: ReleaseOutcome
    replayed: bool = False


# One shared decision per refusal: the hot path allocates none for them.
REFUSED = {outcome: ClaimDecision(outcome) for outcome in ClaimOutcome}


@dataclass(frozen=True, slots=True)
class Coupon:
    name: str
    amount: int
    remaining_amount: int
    claimed_by: list[str]


class DomainError(Exception):
    """A failure the client can act on; ``code`` is stable, ``message`` for people."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class CouponExists(DomainError):
    code = "coupon_exists"


class CouponNotFound(DomainError):
    code = "coupon_not_found"


class AlreadyClaimed(DomainError):
    code = "already_claimed"


class SoldOut(DomainError):
    code = "sold_out"


class NotStarted(DomainError):
    code = "not_started"


class SaleEnded(DomainError):
    code = "sale_ended"


class Paused(DomainError):
    code = "paused"


class ClaimNotFound(DomainError):
    code = "claim_not_found"


class AlreadyRedeemed(DomainError):
    code = "already_redeemed"


class AmountBelowClaimed(DomainError):
    code = "amount_below_claimed"


class WebhookNotFound(DomainError):
    code = "webhook_not_found"


class DestinationRefused(DomainError):
    """A webhook URL that names an address webhooks may not reach."""

    code = "destination_refused"


class EntriesClosed(DomainError):
    code = "entries_closed"


class RaffleDrawn(DomainError):
    code = "raffle_drawn"


class RaffleNeedsIdentities(DomainError):
    """A raffle is only as fair as its entrants are real: not with CLAIM_AUTH=open."""

    code = "raffle_needs_identities"


class RaffleEntriesExist(DomainError):
    """allocation and draw_at are fixed once anyone entered (or claimed)."""

    code = "raffle_entries_exist"


class RaffleDrawing(DomainError):
    """The stock is fixed while a draw places its entrants (a few seconds)."""

    code = "raffle_drawing"


class InvalidDrawAt(DomainError):
    code = "invalid_draw_at"


class InvalidCoupon(DomainError):
    """A coupon's fields that only the database can judge (ends_at in the
    past by its clock, a window whose end would precede its start)."""

    code = "invalid_request"


class IdempotencyKeyReused(DomainError):
    """The Idempotency-Key came with another request (method, path or body)."""

    code = "idempotency_key_reused"


class IdempotencyKeyInUse(DomainError):
    """A request with this Idempotency-Key is still being decided, for longer
    than this one could wait for it (lock_timeout)."""

    code = "idempotency_key_in_use"


class CallerKind(StrEnum):
    """Who is asking (docs/access.md): the operator, the shop's backend, an
    end user with a verified token, or nobody in particular."""

    OPERATOR = "operator"
    BACKEND = "backend"
    USER = "user"
    ANONYMOUS = "anonymous"


@dataclass(frozen=True, slots=True)
class Caller:
    """The identity a request was made with, as the HTTP layer verified it.

    ``name`` is the credential's name (an operator's or backend's token, as
    configured; never the token itself), ``subject`` an end user's token
    ``sub``, ``address`` the client's address (for anonymous quotas)."""

    kind: CallerKind
    name: str | None = None
    subject: str | None = None
    address: str | None = None

    @property
    def privileged(self) -> bool:
        """The operator and the backend act for any user."""
        return self.kind in (CallerKind.OPERATOR, CallerKind.BACKEND)


ANONYMOUS = Caller(CallerKind.ANONYMOUS)


KEY_REUSED = "this Idempotency-Key was used with another request (method, path or body)"


@dataclass(frozen=True, slots=True)
class IdempotencyKey:
    """A request's Idempotency-Key: unique within ``scope`` (the route: method
    and path template); ``key`` is the client's key prefixed with a digest of
    its owner (http/idempotency.py owned_key), so one caller's key never
    meets another's; ``fingerprint`` (a digest of method, path and body)
    tells a retry from another request reusing the key."""

    scope: str
    key: str
    fingerprint: bytes


class TooManyKeys(DomainError):
    """The caller stored as many Idempotency-Keys as its quota allows for now
    (IDEMPOTENCY_KEYS_PER_IDENTITY, IDEMPOTENCY_KEYS_PER_CREDENTIAL)."""

    code = "too_many_keys"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServiceUnavailable(DomainError):
    """The database is out of reach or the service is saturated: retry later."""

    code = "service_unavailable"

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


_REFUSALS: dict[ClaimOutcome, tuple[type[DomainError], str]] = {
    ClaimOutcome.ALREADY_CLAIMED: (
        AlreadyClaimed,
        "user {user!r} has already claimed coupon {coupon!r}",
    ),
    ClaimOutcome.SOLD_OUT: (SoldOut, "coupon {coupon!r} is sold out"),
    ClaimOutcome.NOT_STARTED: (NotStarted, "the sale of coupon {coupon!r} has not started"),
    ClaimOutcome.SALE_ENDED: (SaleEnded, "the sale of coupon {coupon!r} has ended"),
    ClaimOutcome.PAUSED: (Paused, "the sale of coupon {coupon!r} is paused"),
    ClaimOutcome.NOT_FOUND: (CouponNotFound, "coupon {coupon!r} does not exist"),
    ClaimOutcome.KEY_REUSED: (IdempotencyKeyReused, KEY_REUSED),
    ClaimOutcome.ENTRIES_CLOSED: (
        EntriesClosed,
        "the entries of raffle {coupon!r} are closed: the draw is under way",
    ),
    ClaimOutcome.RAFFLE_DRAWN: (
        RaffleDrawn,
        "raffle {coupon!r} was drawn: its units go down the waitlist",
    ),
}

# Decisions that carry the batch's times: a grant (claimed_at, expires_at)
# and an entry (entered at, the draw time).
TIMED = frozenset({ClaimOutcome.CLAIMED, ClaimOutcome.ENTERED})


def raise_for_outcome(outcome: ClaimOutcome, *, coupon_name: str, user_id: str) -> None:
    """Turn a claim's outcome into success (return) or the client's error."""
    if outcome is not ClaimOutcome.CLAIMED:
        _raise(_REFUSALS[outcome], coupon_name, user_id)


_RELEASE_REFUSALS: dict[ReleaseOutcome, tuple[type[DomainError], str]] = {
    ReleaseOutcome.CLAIM_NOT_FOUND: (
        ClaimNotFound,
        "user {user!r} holds no live claim on coupon {coupon!r}",
    ),
    ReleaseOutcome.ALREADY_REDEEMED: (
        AlreadyRedeemed,
        "user {user!r} has already redeemed coupon {coupon!r}",
    ),
    ReleaseOutcome.NOT_FOUND: (CouponNotFound, "coupon {coupon!r} does not exist"),
    ReleaseOutcome.KEY_REUSED: (IdempotencyKeyReused, KEY_REUSED),
}


def raise_for_release(outcome: ReleaseOutcome, *, coupon_name: str, user_id: str) -> None:
    """Turn a release's outcome into success (return) or the client's error."""
    if outcome is not ReleaseOutcome.RELEASED:
        _raise(_RELEASE_REFUSALS[outcome], coupon_name, user_id)


def _raise(refusal: tuple[type[DomainError], str], coupon_name: str, user_id: str) -> None:
    error, message = refusal
    raise error(message.format(user=user_id, coupon=coupon_name))
