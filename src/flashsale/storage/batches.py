"""A decided batch's row (SQL claim_many and its keyed wrappers) turned into
the claim engine's BatchResult: each arrival's outcome in arrival order; a
sold-out read's rows into its SoldOutRead."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from flashsale.claims.ports import BatchResult, CouponPart, SoldOutRead
from flashsale.domain import ClaimOutcome, ReleaseOutcome
from flashsale.storage.rows import release_actors_json


def batch_result(row: asyncpg.Record, firsts: list[str], user_ids: Sequence[str]) -> BatchResult:
    """The claims' outcomes (``firsts``: each user at its first arrival)."""
    if row["coupon_id"] is None:
        return BatchResult([ClaimOutcome.NOT_FOUND] * len(user_ids), None, None)
    claimed = row["claimed"]
    if len(claimed) == len(user_ids):  # all granted (so each user arrived once): the common part
        outcomes = [ClaimOutcome.CLAIMED] * len(user_ids)
    else:
        refusal = ClaimOutcome(row["refusal"]) if row["refusal"] else ClaimOutcome.SOLD_OUT
        decided = _first_arrival_outcomes(firsts, claimed, row["holders"], refusal)
        outcomes = _with_repeats(user_ids, decided)
    return BatchResult(
        outcomes,
        row["coupon_id"],
        row["remaining"],
        row["claimed_at"],
        row["expires_at"],
    )


def coupons_arguments(parts: Sequence[CouponPart], firsts: list[list[str]]) -> tuple[Any, ...]:
    """claim_many_coupons' arrays: the coupons, their distinct users'
    (``firsts``) counts, then users and releases each with its part's number,
    then each part's release actors (claim_many's p_release_actors)."""
    names: list[str] = []
    counts: list[int] = []
    user_parts: list[int] = []
    users: list[str] = []
    release_parts: list[int] = []
    releases: list[str] = []
    actors: list[str | None] = []
    for number, (part, first) in enumerate(zip(parts, firsts, strict=True), start=1):
        names.append(part.coupon_name)
        counts.append(len(first))
        user_parts.extend([number] * len(first))
        users.extend(first)
        release_parts.extend([number] * len(part.releases))
        releases.extend(part.releases)
        actors.append(release_actors_json(part.releases, part.release_actors))
    return names, counts, user_parts, users, release_parts, releases, actors


def sold_out_read(rows: list[asyncpg.Record]) -> SoldOutRead:
    """One coupon's sold_out_batch rows (one per arrival, in order)."""
    first = rows[0]
    refusal = ClaimOutcome(first["refusal"]) if first["refusal"] else None
    holds = [row["holds"] for row in rows]
    return SoldOutRead(holds, first["coupon_id"], first["remaining"], refusal)


def release_outcomes(row: asyncpg.Record, releases: list[str]) -> list[ReleaseOutcome]:
    """Each release's outcome in order; a user released twice in one batch
    gets its unit back once: the repeats held nothing any more."""
    if not releases:
        return []
    if row["coupon_id"] is None:
        return [ReleaseOutcome.NOT_FOUND] * len(releases)
    back, redeemed = set(row["released"]), set(row["redeemed"])
    outcomes = []
    for user in releases:
        if user in back:
            outcomes.append(ReleaseOutcome.RELEASED)
            back.discard(user)
        elif user in redeemed:
            outcomes.append(ReleaseOutcome.ALREADY_REDEEMED)
        else:
            outcomes.append(ReleaseOutcome.CLAIM_NOT_FOUND)
    return outcomes


def _first_arrival_outcomes(
    users: list[str], claimed: list[str], holders: list[str] | None, refusal: ClaimOutcome
) -> dict[str, ClaimOutcome]:
    """Each distinct user's outcome from claim_many's answer. ``holders`` is
    None when every user fitted in the stock: then whoever was not granted a
    claim was refused by the primary key, i.e. already holds the coupon.
    Everyone else hears ``refusal``: why the sale is closed, or sold_out."""
    granted = set(claimed)
    held = set(users) - granted if holders is None else set(holders)
    return {
        user: ClaimOutcome.CLAIMED
        if user in granted
        else ClaimOutcome.ALREADY_CLAIMED
        if user in held
        else refusal
        for user in users
    }


def _with_repeats(user_ids: Sequence[str], decided: dict[str, ClaimOutcome]) -> list[ClaimOutcome]:
    """Outcomes in arrival order; a user's later arrivals in the same batch
    hear already_claimed if the first one holds the coupon now."""
    seen: set[str] = set()
    outcomes = []
    for user in user_ids:
        outcome = decided[user]
        if user in seen and outcome is ClaimOutcome.CLAIMED:
            outcome = ClaimOutcome.ALREADY_CLAIMED
        seen.add(user)
        outcomes.append(outcome)
    return outcomes
