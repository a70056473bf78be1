"""Rows of coupon_state and live_claims (schema.sql) as the service's
values, and a coupon's page of rows as its paged queries give it."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from typing import TypeVar

import asyncpg

from flashsale.domain import Caller
from flashsale.service.ports import ClaimView, CouponState

T = TypeVar("T")


# The coupon_state view's columns are CouponState's fields, by name; the
# live_claims view's are ClaimView's, its id first (claim_id).
_COUPON_STATE = tuple(field.name for field in dataclasses.fields(CouponState))
_LIVE_CLAIM = ("id", *(field.name for field in dataclasses.fields(ClaimView)[1:]))


def coupon_state(row: asyncpg.Record) -> CouponState:
    return CouponState(*(row[name] for name in _COUPON_STATE))


def claim_view(row: asyncpg.Record) -> ClaimView:
    return ClaimView(*(row[name] for name in _LIVE_CLAIM))


def coupon_page(rows: list[asyncpg.Record], make: Callable[[asyncpg.Record], T]) -> list[T] | None:
    """A page from a query that joins a coupon to its rows (claims_page,
    coupon_events_page): no row at all, no such coupon (None); a single row
    with a NULL id, the coupon exists and the page is empty."""
    if not rows:
        return None
    return [make(row) for row in rows if row["id"] is not None]


def actor_json(actor: Caller | None) -> str | None:
    """Who made a change, as events and endpoints record it: the kind of
    caller and its credential's name (never the credential), or an end
    user's sub; None when nobody is named."""
    if actor is None:
        return None
    return json.dumps(actor_fields(actor))


def actor_fields(actor: Caller) -> dict[str, str]:
    """An actor's recorded fields: its kind, then its name or sub (never
    the credential, nor the client's address)."""
    fields: dict[str, str] = {"kind": actor.kind.value}
    if actor.name is not None:
        fields["name"] = actor.name
    if actor.subject is not None:
        fields["subject"] = actor.subject
    return fields


def release_actors_json(releases: Sequence[str], actors: Sequence[Caller | None]) -> str | None:
    """Who released which user (claim_many's p_release_actors: a JSON
    object, user id -> actor), or None when nobody is named (no release, or
    none with an actor: such a batch pays nothing). A user released twice in
    one batch is named by its first release, the one that gave the unit back."""
    named: dict[str, dict[str, str]] = {}
    for user, actor in zip(releases, actors, strict=False):
        if actor is not None and user not in named:
            named[user] = actor_fields(actor)
    return json.dumps(named) if named else None


def actor_of(text: str | None) -> dict[str, str] | None:
    """An actor as stored (jsonb read as text), back to its fields."""
    if text is None:
        return None
    fields: dict[str, str] = json.loads(text)
    return fields
