"""The default strategy: concurrent claims share a transaction.

Two kinds of lane:
- the claim lanes (claims/lanes.py: a few per process, a coupon in one by
  its name's hash) decide a batch of several coupons' claims in one
  transaction (the store's ``decide_coupons``: SQL ``claim_many_coupons``),
  or of one coupon's (``decide_batch``: SQL ``claim_many``, exactly as
  before), under each coupon's row lock. Parts with Idempotency-Keys go in
  the same call (SQL ``claim_many_coupons_keyed``), unless a keyed user
  arrives twice in its part: that part's rounds (claims/keyed.py) are
  decided beside the batch, one ``decide_batch`` call each;
- the sold-out lanes (the same kind, and the same lane for a coupon), used
  once this process has seen the coupon sold out, run ``sold_out_batch``
  (``sold_out_coupons`` for several coupons), a plain snapshot read that
  never touches the lock.

The sold-out hint is keyed by the coupon's identity, and it is only a hint:
stock comes back (a release, a restock, a hold that expires), so every
sold-out read re-reads the coupon's stock in a fresh snapshot, counting due
holds as returned whether or not they were swept yet. A committed return of
stock is in that snapshot, so the first read after it sees stock and sends
the claims back to the claim lane, whose answer is authoritative. The same
read decides the sale's window and pause as claim_many does, so both lanes
answer alike (already_claimed first, then sale_ended, paused, not_started,
then sold_out).

Releases ride in the claim lane: a release waits for the coupon's next claim
batch and is decided in its transaction (claim_many's p_releases), so a
release storm never takes the hot coupon's row lock through commits of its
own, and a released unit goes to that batch's claims. Before the lane, a
coupon's releases gather at its gate for a moment (claims/gate.py), so that
one batch decides several.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from functools import partial

from flashsale.claims.gate import ReleaseGate
from flashsale.claims.keyed import Decided as _Decided
from flashsale.claims.keyed import Keyed, Release, decide_keyed, has_keys, in_one_call
from flashsale.claims.keyed import Work as _Work
from flashsale.claims.lanes import CouponLanes, OnLaneBatch
from flashsale.claims.ports import (
    BatchResult,
    ClaimStore,
    CouponPart,
    Key,
    SoldOutRead,
)
from flashsale.domain import (
    REFUSED,
    TIMED,
    Caller,
    ClaimDecision,
    ClaimOutcome,
    ReleaseDecision,
    ReleaseOutcome,
)

_ALREADY = REFUSED[ClaimOutcome.ALREADY_CLAIMED]


class BatchedClaims:
    def __init__(
        self,
        store: ClaimStore,
        *,
        max_batch: int,
        max_queue: int,
        on_batch: Callable[[str, int], None] | None = None,  # (lane, size), for metrics
        release_gather: tuple[float, int] = (0.0, 1),  # (seconds, most) at the gate; 0: none
        lanes: int = 1,
        coupon_share: int | None = None,  # one coupon's most in a batch of several; None: all
        on_lane_batch: OnLaneBatch | None = None,
    ) -> None:
        self._store = store
        self._gate = ReleaseGate(seconds=release_gather[0], most=release_gather[1])
        self._sold_out: dict[str, int] = {}  # coupon name -> id of the coupon seen sold out
        self._on_claim_batch = partial(on_batch, "claim") if on_batch else None
        self._on_lane_batch = on_lane_batch
        self._claim_lane: CouponLanes[_Work, _Decided] = CouponLanes(
            self._run_lane_batch,
            lanes=lanes,
            max_batch=max_batch,
            coupon_share=coupon_share or max_batch,
            max_queue=max_queue,
            on_batch=self._observe_lane_batch,
        )
        on_sold_out = partial(on_batch, "sold_out") if on_batch else None
        self._sold_out_lane: CouponLanes[str, ClaimDecision | None] = CouponLanes(
            self._run_sold_out_lane,
            lanes=lanes,
            max_batch=max_batch,
            coupon_share=coupon_share or max_batch,
            max_queue=max_queue,
            on_batch=(lambda _lane, size, _c, _w: on_sold_out(size)) if on_sold_out else None,
        )

    async def claim(self, *, coupon_name: str, user_id: str, key: Key = None) -> ClaimDecision:
        if key is not None:
            # Straight to the claim lane: its batch stores the decision with
            # the key (the sold-out lane writes nothing).
            keyed = await self._claim_lane.submit(coupon_name, Keyed(user_id, key))
            assert isinstance(keyed, ClaimDecision)
            return keyed
        if coupon_name in self._sold_out:
            decision = await self._sold_out_lane.submit(coupon_name, user_id)
            if decision is not None:
                return decision
        decided = await self._claim_lane.submit(coupon_name, user_id)
        assert isinstance(decided, ClaimDecision)
        return decided

    async def release(
        self, *, coupon_name: str, user_id: str, key: Key = None, actor: Caller | None = None
    ) -> ReleaseDecision:
        await self._gate.wait(coupon_name)
        decided = await self._claim_lane.submit(coupon_name, Release(user_id, key, actor))
        if isinstance(decided, ReleaseOutcome):  # an unkeyed release
            return ReleaseDecision(decided)
        assert isinstance(decided, ReleaseDecision)
        return decided

    def _observe_lane_batch(self, lane: int, size: int, coupons: int, wait: float) -> None:
        if self._on_claim_batch is not None:
            self._on_claim_batch(size)
        if self._on_lane_batch is not None:
            self._on_lane_batch(lane, size, coupons, wait)

    async def _run_lane_batch(
        self, parts: dict[str, list[_Work]]
    ) -> dict[str, Sequence[_Decided] | Exception]:
        """One coupon: its batch as before. Several: every part that one call
        decides (keys included) in one decide_coupons call; a keyed part
        whose keyed user arrives twice (decide_keyed's rounds) beside it."""
        if len(parts) == 1:
            [(coupon_name, work)] = parts.items()
            return {coupon_name: await self._run_claim_lane(coupon_name, work)}
        together = {name: work for name, work in parts.items() if in_one_call(work)}
        rounds = [name for name in parts if name not in together]
        alone = asyncio.gather(
            *(self._run_claim_lane(name, parts[name]) for name in rounds), return_exceptions=True
        )
        decided: dict[str, Sequence[_Decided] | Exception] | Exception
        try:
            decided = await self._decide_together(together)
        except Exception as error:  # a whole-batch failure is every part's in it
            decided = error
        answers = {
            name: decided if isinstance(decided, Exception) else decided[name] for name in together
        }
        for name, outcome in zip(rounds, await alone, strict=True):
            if not isinstance(outcome, Exception | list):
                raise outcome  # cancelled: shutting down
            answers[name] = outcome
        return answers

    async def _decide_together(
        self, together: dict[str, list[_Work]]
    ) -> dict[str, Sequence[_Decided] | Exception]:
        if not together:
            return {}
        parts = [_part(name, work) for name, work in together.items()]
        results = await self._store.decide_coupons(parts)
        return {
            part.coupon_name: result
            if isinstance(result, Exception)
            else self._answers(part, together[part.coupon_name], result)
            for part, result in zip(parts, results, strict=True)
        }

    def _answers(self, part: CouponPart, work: list[_Work], result: BatchResult) -> list[_Decided]:
        if part.has_keys():
            return self._keyed_answers(part, work, result)
        return self._decided(part.coupon_name, work, list(part.releases), result)

    async def _run_claim_lane(self, coupon_name: str, work: Sequence[_Work]) -> list[_Decided]:
        if has_keys(work):
            return await decide_keyed(partial(self._decide_keyed_round, coupon_name), work)
        users = [item for item in work if isinstance(item, str)]
        backs = [item for item in work if isinstance(item, Release)]
        releases = [item.user_id for item in backs]
        actors = [item.actor for item in backs]
        result = await self._store.decide_batch(coupon_name, users, releases, release_actors=actors)
        return self._decided(coupon_name, work, releases, result)

    def _decided(
        self, coupon_name: str, work: Sequence[_Work], releases: list[str], result: BatchResult
    ) -> list[_Decided]:
        """Each arrival's answer from its coupon's decided batch, in order."""
        self._note_stock(coupon_name, result.coupon_id, result.remaining, releases)
        decisions = _decisions(result)
        if not releases:  # claims only (the common part): one decision each, in order
            return decisions
        claims = iter(decisions)
        released = iter(result.releases)
        return [next(claims) if isinstance(item, str) else next(released) for item in work]

    async def _decide_keyed_round(self, coupon_name: str, work: list[_Work]) -> list[_Decided]:
        """One decide_batch call with keys (a round of decide_keyed)."""
        part = _part(coupon_name, work)
        result = await self._store.decide_batch(
            coupon_name,
            part.user_ids,
            part.releases,
            part.claim_keys,
            part.release_keys,
            release_actors=part.release_actors,
        )
        return self._keyed_answers(part, work, result)

    def _keyed_answers(
        self, part: CouponPart, work: Sequence[_Work], result: BatchResult
    ) -> list[_Decided]:
        """Each arrival's answer, a keyed one the decision stored under its key."""
        self._note_stock(part.coupon_name, result.coupon_id, result.remaining, list(part.releases))
        # Empty when the call had no key after all (a later round of unkeyed repeats).
        keyed_claims = result.keyed_claims or [None] * len(result.outcomes)
        keyed_releases = result.keyed_releases or [None] * len(result.releases)
        decisions = iter(
            keyed or _decision(outcome, result)
            for outcome, keyed in zip(result.outcomes, keyed_claims, strict=True)
        )
        backs = iter(
            keyed or outcome for outcome, keyed in zip(result.releases, keyed_releases, strict=True)
        )
        return [next(backs) if isinstance(item, Release) else next(decisions) for item in work]

    def _note_stock(
        self, coupon_name: str, coupon_id: int | None, remaining: int | None, releases: list[str]
    ) -> None:
        if coupon_id is not None and remaining == 0:
            self._sold_out[coupon_name] = coupon_id
        elif releases:  # stock came back: claims go to the claim lane again
            self._sold_out.pop(coupon_name, None)

    async def _run_sold_out_lane(
        self, parts: dict[str, list[str]]
    ) -> dict[str, Sequence[ClaimDecision | None] | Exception]:
        """One coupon's read as before; several coupons' in one read."""
        if len(parts) == 1:
            [(coupon_name, users)] = parts.items()
            read = await self._store.sold_out_batch(coupon_name, users)
            return {coupon_name: self._sold_out_answers(coupon_name, users, read)}
        reads = await self._store.sold_out_coupons([CouponPart(*part) for part in parts.items()])
        return {
            name: self._sold_out_answers(name, users, read)
            for (name, users), read in zip(parts.items(), reads, strict=True)
        }

    def _sold_out_answers(
        self, coupon_name: str, users: Sequence[str], read: SoldOutRead
    ) -> list[ClaimDecision | None]:
        """Decisions for a coupon believed sold out; None sends a claim back to
        the claim lane because the belief turned out stale."""
        if read.coupon_id is None:
            self._sold_out.pop(coupon_name, None)
            return [REFUSED[ClaimOutcome.NOT_FOUND]] * len(users)
        if read.coupon_id != self._sold_out.get(coupon_name) or read.remaining != 0:
            self._sold_out.pop(coupon_name, None)
            return [None] * len(users)
        refused = REFUSED[read.refusal or ClaimOutcome.SOLD_OUT]
        return [_ALREADY if holds else refused for holds in read.holds]

    async def close(self) -> None:
        self._gate.open_all()
        await asyncio.sleep(0)  # the released waiters join the lane before it drains
        await self._claim_lane.close()
        await self._sold_out_lane.close()


def _decisions(result: BatchResult) -> list[_Decided]:
    """Each claim's decision, in order. A batch's grants share one decision
    (frozen: the same outcome and times for each)."""
    granted = ClaimDecision(ClaimOutcome.CLAIMED, result.claimed_at, result.expires_at)
    return [
        granted if outcome is ClaimOutcome.CLAIMED else _decision(outcome, result)
        for outcome in result.outcomes
    ]


def _decision(outcome: ClaimOutcome, result: BatchResult) -> ClaimDecision:
    """An arrival's decision: a grant or an entry with the batch's times, a
    shared refusal otherwise (none allocated on the hot path)."""
    if outcome in TIMED:
        return ClaimDecision(outcome, result.claimed_at, result.expires_at)
    return REFUSED[outcome]


def _part(coupon_name: str, work: Sequence[_Work]) -> CouponPart:
    """A coupon's work as the store takes it: its claims, its releases with
    who sent each, and their keys if any arrival has one."""
    plain = [item for item in work if type(item) is str]
    if len(plain) == len(work):  # claims only, none with a key: the common part
        return CouponPart(coupon_name, plain)
    releases = [item for item in work if isinstance(item, Release)]
    claims = [item for item in work if not isinstance(item, Release)]
    users = [item if isinstance(item, str) else item.user_id for item in claims]
    released = [item.user_id for item in releases]
    actors = [item.actor for item in releases]
    if not has_keys(work):
        return CouponPart(coupon_name, users, released, actors)
    claim_keys = [None if isinstance(item, str) else item.key for item in claims]
    release_keys = [item.key for item in releases]
    return CouponPart(coupon_name, users, released, actors, claim_keys, release_keys)
