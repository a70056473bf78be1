"""An in-memory ClaimStore (flashsale.claims.ports) for unit tests of the
claim engine: coupons in a dict, decided as the SQL decides them (holders
hear already_claimed, then stock goes in arrival order), every call recorded
as a Batch. ``gate`` holds calls so that callers pile up behind the one in
flight; ``failure`` makes every call raise."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

from flashsale.claims.ports import BatchResult, CouponPart, Key, PartResult, SoldOutRead
from flashsale.domain import Caller, ClaimDecision, ClaimOutcome, ReleaseOutcome


@dataclass
class FakeCoupon:
    id: int
    amount: int
    holders: list[str] = field(default_factory=list)

    @property
    def remaining(self) -> int:
        return self.amount - len(self.holders)


@dataclass(frozen=True)
class Batch:
    call: str  # the ClaimStore method: decide_batch, sold_out_batch or claim_one
    coupon: str
    users: list[str]


class FakeClaimStore:
    def __init__(self) -> None:
        self.coupons: dict[str, FakeCoupon] = {}
        self.batches: list[Batch] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.failure: BaseException | None = None
        self.broken: dict[str, Exception] = {}  # coupon -> its part's error in decide_coupons
        self.keys: dict[tuple[str, str], tuple[bytes, ClaimOutcome]] = {}
        # Every release sent, with who sent it: (coupon, user, actor).
        self.released_by: list[tuple[str, str, Caller | None]] = []
        self._ids = itertools.count(1)

    def create(self, name: str, amount: int) -> None:
        """A coupon under ``name``, with a new id (as a recreated one gets)."""
        self.coupons[name] = FakeCoupon(next(self._ids), amount)

    def calls(self, call: str) -> list[Batch]:
        return [batch for batch in self.batches if batch.call == call]

    async def decide_batch(
        self,
        coupon_name: str,
        user_ids: Sequence[str],
        releases: Sequence[str] = (),
        claim_keys: Sequence[Key] = (),
        release_keys: Sequence[Key] = (),
        *,
        release_actors: Sequence[Caller | None] = (),
    ) -> BatchResult:
        self._note_actors(coupon_name, releases, release_actors)
        if any(claim_keys) or any(release_keys):
            return await self._decide_keyed(coupon_name, user_ids, claim_keys)
        coupon = await self._enter("decide_batch", coupon_name, [*releases, *user_ids])
        return self._decide_part(coupon, user_ids, releases)

    async def decide_coupons(self, parts: Sequence[CouponPart]) -> list[PartResult]:
        """One call for every part (recorded under the names joined by '+');
        a coupon named in ``broken`` gets its error, as a part that failed
        on its own after the store's fallback."""
        for part in parts:
            self._note_actors(part.coupon_name, part.releases, part.release_actors)
        names = "+".join(part.coupon_name for part in parts)
        await self._enter("decide_coupons", names, [u for p in parts for u in p.user_ids])
        return [
            self.broken[part.coupon_name]
            if part.coupon_name in self.broken
            else self._keyed_part(
                self.coupons.get(part.coupon_name), part.user_ids, part.claim_keys
            )
            if any(part.claim_keys)
            else self._decide_part(self.coupons.get(part.coupon_name), part.user_ids, part.releases)
            for part in parts
        ]

    def _note_actors(
        self, coupon_name: str, releases: Sequence[str], actors: Sequence[Caller | None]
    ) -> None:
        named = list(actors) or [None] * len(releases)
        assert len(named) == len(releases), "release_actors is parallel to releases"
        self.released_by.extend(zip([coupon_name] * len(releases), releases, named, strict=True))

    def _decide_part(
        self, coupon: FakeCoupon | None, user_ids: Sequence[str], releases: Sequence[str]
    ) -> BatchResult:
        if coupon is None:
            missing = [ReleaseOutcome.NOT_FOUND] * len(releases)
            return BatchResult(
                [ClaimOutcome.NOT_FOUND] * len(user_ids), None, None, releases=missing
            )
        released = [self._release(coupon, user) for user in releases]
        outcomes = [self._decide(coupon, user) for user in user_ids]
        return BatchResult(outcomes, coupon.id, coupon.remaining, releases=released)

    async def _decide_keyed(
        self, coupon_name: str, user_ids: Sequence[str], claim_keys: Sequence[Key]
    ) -> BatchResult:
        """Keyed claims only (what the engine's unit tests send): a key's first
        decision is kept and replayed, as decide_batch keeps it."""
        coupon = await self._enter("decide_batch", coupon_name, list(user_ids))
        return self._keyed_part(coupon, user_ids, claim_keys)

    def _keyed_part(
        self, coupon: FakeCoupon | None, user_ids: Sequence[str], claim_keys: Sequence[Key]
    ) -> BatchResult:
        assert coupon is not None
        outcomes: list[ClaimOutcome] = []
        keyed: list[ClaimDecision | None] = []
        for user, key in zip(user_ids, claim_keys, strict=True):
            stored = self.keys.get((key.scope, key.key)) if key else None
            if key and stored:
                outcome = stored[1] if stored[0] == key.fingerprint else ClaimOutcome.KEY_REUSED
                keyed.append(ClaimDecision(outcome, replayed=True))
                outcomes.append(outcome)
                continue
            outcomes.append(self._decide(coupon, user))
            if key:
                self.keys[(key.scope, key.key)] = (key.fingerprint, outcomes[-1])
            keyed.append(ClaimDecision(outcomes[-1]) if key else None)
        return BatchResult(outcomes, coupon.id, coupon.remaining, keyed_claims=keyed)

    async def sold_out_batch(self, coupon_name: str, user_ids: Sequence[str]) -> SoldOutRead:
        coupon = await self._enter("sold_out_batch", coupon_name, user_ids)
        if coupon is None:
            return SoldOutRead([False] * len(user_ids), None, None)
        holds = [user in coupon.holders for user in user_ids]
        return SoldOutRead(holds, coupon.id, coupon.remaining)

    async def sold_out_coupons(self, parts: Sequence[CouponPart]) -> list[SoldOutRead]:
        names = "+".join(part.coupon_name for part in parts)
        await self._enter("sold_out_coupons", names, [u for p in parts for u in p.user_ids])
        reads = []
        for part in parts:
            coupon = self.coupons.get(part.coupon_name)
            if coupon is None:
                reads.append(SoldOutRead([False] * len(part.user_ids), None, None))
                continue
            holds = [user in coupon.holders for user in part.user_ids]
            reads.append(SoldOutRead(holds, coupon.id, coupon.remaining))
        return reads

    async def claim_one(self, *, coupon_name: str, user_id: str, key: Key = None) -> ClaimDecision:
        coupon = await self._enter("claim_one", coupon_name, [user_id])
        outcome = ClaimOutcome.NOT_FOUND if coupon is None else self._decide(coupon, user_id)
        return ClaimDecision(outcome)

    async def _enter(self, call: str, coupon: str, users: Sequence[str]) -> FakeCoupon | None:
        self.batches.append(Batch(call, coupon, list(users)))
        await self.gate.wait()
        if self.failure is not None:
            raise self.failure
        return self.coupons.get(coupon)

    @staticmethod
    def _release(coupon: FakeCoupon, user: str) -> ReleaseOutcome:
        if user not in coupon.holders:
            return ReleaseOutcome.CLAIM_NOT_FOUND
        coupon.holders.remove(user)
        return ReleaseOutcome.RELEASED

    @staticmethod
    def _decide(coupon: FakeCoupon, user: str) -> ClaimOutcome:
        if user in coupon.holders:
            return ClaimOutcome.ALREADY_CLAIMED
        if coupon.remaining == 0:
            return ClaimOutcome.SOLD_OUT
        coupon.holders.append(user)
        return ClaimOutcome.CLAIMED
