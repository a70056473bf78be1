"""Claim-lane batches with Idempotency-Keys in them.

A batch (ClaimStore.decide_batch, SQL claim_many) decides each user once
per kind (claim, release) and keeps a key's decision per user, so a batch is
split before it is sent:

- arrivals with a key already seen in the batch (a client retrying while
  its first attempt waits in the same queue) are not sent at all: they get
  the first arrival's decision, as a replay, or idempotency_key_reused when
  their fingerprint differs;
- a keyed arrival whose user has another arrival of its kind in the batch
  (two keys for one user, or one with and one without) goes in a later call,
  one round trip more, and only then: a batch sees each keyed user once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace

from flashsale.domain import (
    Caller,
    ClaimDecision,
    ClaimOutcome,
    IdempotencyKey,
    ReleaseDecision,
    ReleaseOutcome,
)


@dataclass(frozen=True, slots=True)
class Keyed:
    """A claim with an Idempotency-Key (a plain user id is a claim without)."""

    user_id: str
    key: IdempotencyKey


@dataclass(frozen=True, slots=True)
class Release:
    """A release in the claim lane, with its Idempotency-Key if it has one
    and who sent it (named in its event: several callers' releases share a
    batch, so each carries its own)."""

    user_id: str
    key: IdempotencyKey | None = None
    actor: Caller | None = None


Work = str | Keyed | Release
Decided = ClaimDecision | ReleaseOutcome | ReleaseDecision
Run = Callable[[list[Work]], Awaitable[list[Decided]]]


def has_keys(work: Sequence[Work]) -> bool:
    return any(type(item) is Keyed or (type(item) is Release and item.key) for item in work)


def in_one_call(work: Sequence[Work]) -> bool:
    """Whether one decide call takes the work whole: it has no key, or no
    key and no user of a kind arrives twice in it (decide_keyed's one round)."""
    return not has_keys(work) or _all_distinct(work)


async def decide_keyed(run: Run, work: Sequence[Work]) -> list[Decided]:
    """Every arrival's decision, in order, from as few ``run`` calls as the
    module's rules allow (one, unless a keyed user arrives twice)."""
    if _all_distinct(work):
        return await run(list(work))  # no repeat to follow, no user to split
    leaders: dict[tuple[str, str], int] = {}
    followers: dict[int, int] = {}
    rounds = _Rounds()
    for index, item in enumerate(work):
        key = _key(item)
        if key is not None:
            leader = leaders.setdefault((key.scope, key.key), index)
            if leader != index:
                followers[index] = leader
                continue
        rounds.place(index, item, key)
    decided: dict[int, Decided] = {}
    for members in rounds.members:
        results = await run([work[index] for index in members])
        decided.update(zip(members, results, strict=True))
    for index, leader in followers.items():
        decided[index] = _follow(work[index], work[leader], decided[leader])
    return [decided[index] for index in range(len(work))]


class _Rounds:
    """Calls to decide_batch, each with every keyed user once per kind."""

    def __init__(self) -> None:
        self.members: list[list[int]] = []
        self._seen: list[set[tuple[bool, str]]] = []  # (is release, user) in the call
        self._keyed: list[set[tuple[bool, str]]] = []  # the same, for keyed arrivals

    def place(self, index: int, item: Work, key: IdempotencyKey | None) -> None:
        who = _who(item)
        for number, seen in enumerate(self._seen):
            if who not in (seen if key else self._keyed[number]):
                break
        else:
            number = len(self.members)
            self.members.append([])
            self._seen.append(set())
            self._keyed.append(set())
        self.members[number].append(index)
        self._seen[number].add(who)
        if key:
            self._keyed[number].add(who)


def _all_distinct(work: Sequence[Work]) -> bool:
    """Whether no key and no user of a kind arrives twice: the common batch,
    which the rules send whole, in one call."""
    keys = [(key.scope, key.key) for item in work if (key := _key(item)) is not None]
    who = {_who(item) for item in work}
    return len(who) == len(work) and len(set(keys)) == len(keys)


def _who(item: Work) -> tuple[bool, str]:
    """An arrival's kind (is it a release) and user."""
    return type(item) is Release, item if isinstance(item, str) else item.user_id


def _key(item: Work) -> IdempotencyKey | None:
    return None if isinstance(item, str) else item.key


def _follow(item: Work, leader: Work, decision: Decided) -> Decided:
    """A repeat of a key in one batch: the first arrival's decision, replayed."""
    same = _key(item) == _key(leader)  # same fingerprint, as IdempotencyKey compares
    if isinstance(decision, ClaimDecision):
        if not same:
            return ClaimDecision(ClaimOutcome.KEY_REUSED)
        return replace(decision, replayed=True)
    if isinstance(decision, ReleaseDecision):
        if not same:
            return ReleaseDecision(ReleaseOutcome.KEY_REUSED)
        return ReleaseDecision(decision.outcome, replayed=True)
    return decision
