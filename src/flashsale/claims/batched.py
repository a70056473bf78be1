"""The default strategy: concurrent claims for one coupon share a transaction.

Two lanes per coupon, each a Coalescer:
- the claim lane decides a batch (the store's ``decide_batch``: SQL
  ``claim_many``), which takes the coupon's row lock;
- the sold-out lane, used once this process has seen the coupon sold out,
  runs ``sold_out_batch``, a plain snapshot read that never touches the lock.

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

from flashsale.claims.coalescer import Coalescer
from flashsale.claims.gate import ReleaseGate
from flashsale.claims.keyed import Decided as _Decided
from flashsale.claims.keyed import Keyed, Release, decide_keyed, has_keys
from flashsale.claims.keyed import Work as _Work
from flashsale.claims.ports import ClaimStore, Key
from flashsale.domain import (
    REFUSED,
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
    ) -> None:
        self._store = store
        self._gate = ReleaseGate(seconds=release_gather[0], most=release_gather[1])
        self._sold_out: dict[str, int] = {}  # coupon name -> id of the coupon seen sold out
        self._claim_lane: Coalescer[str, _Work, _Decided] = Coalescer(
            self._run_claim_lane,
            max_batch=max_batch,
            max_queue=max_queue,
            on_batch=partial(on_batch, "claim") if on_batch else None,
        )
        self._sold_out_lane: Coalescer[str, str, ClaimDecision | None] = Coalescer(
            self._sold_out_batch,
            max_batch=max_batch,
            max_queue=max_queue,
            on_batch=partial(on_batch, "sold_out") if on_batch else None,
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

    async def release(self, *, coupon_name: str, user_id: str, key: Key = None) -> ReleaseDecision:
        await self._gate.wait(coupon_name)
        decided = await self._claim_lane.submit(coupon_name, Release(user_id, key))
        if isinstance(decided, ReleaseOutcome):  # an unkeyed release
            return ReleaseDecision(decided)
        assert isinstance(decided, ReleaseDecision)
        return decided

    async def _run_claim_lane(self, coupon_name: str, work: Sequence[_Work]) -> list[_Decided]:
        if has_keys(work):
            return await decide_keyed(partial(self._decide_keyed_round, coupon_name), work)
        users = [item for item in work if isinstance(item, str)]
        releases = [item.user_id for item in work if isinstance(item, Release)]
        result = await self._store.decide_batch(coupon_name, users, releases)
        self._note_stock(coupon_name, result.coupon_id, result.remaining, releases)
        granted = ClaimDecision(ClaimOutcome.CLAIMED, result.claimed_at, result.expires_at)
        claims = iter(
            [granted if o is ClaimOutcome.CLAIMED else REFUSED[o] for o in result.outcomes]
        )
        released = iter(result.releases)
        return [next(claims) if isinstance(item, str) else next(released) for item in work]

    async def _decide_keyed_round(self, coupon_name: str, work: list[_Work]) -> list[_Decided]:
        """One decide_batch call with keys (a round of decide_keyed); each
        keyed arrival answered with the decision stored under its key."""
        claims = [item for item in work if not isinstance(item, Release)]
        users = [item if isinstance(item, str) else item.user_id for item in claims]
        claim_keys = [None if isinstance(item, str) else item.key for item in claims]
        releases = [item for item in work if isinstance(item, Release)]
        release_keys = [item.key for item in releases]
        released_users = [item.user_id for item in releases]
        result = await self._store.decide_batch(
            coupon_name, users, released_users, claim_keys, release_keys
        )
        self._note_stock(coupon_name, result.coupon_id, result.remaining, released_users)
        granted = ClaimDecision(ClaimOutcome.CLAIMED, result.claimed_at, result.expires_at)
        # Empty when this call had no key after all (a later round of unkeyed repeats).
        keyed_claims = result.keyed_claims or [None] * len(result.outcomes)
        keyed_releases = result.keyed_releases or [None] * len(result.releases)
        decisions = iter(
            keyed or (granted if outcome is ClaimOutcome.CLAIMED else REFUSED[outcome])
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

    async def _sold_out_batch(
        self, coupon_name: str, users: Sequence[str]
    ) -> list[ClaimDecision | None]:
        """Decisions for a coupon believed sold out; None sends a claim back to
        the claim lane because the belief turned out stale."""
        read = await self._store.sold_out_batch(coupon_name, users)
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
