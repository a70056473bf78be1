"""The checks of ``flashsale verify-draw``, on what the API published (no I/O).

The rule is ``flashsale.draw_rule``: the seed's SHA-256 is the commitment
published before the draw, and the entrants' digests in ascending order of
HMAC-SHA256(seed, digest) are the places, the first ``draw_winners`` the
winners. Everything here is recomputed from published values only; what that
proves and what it cannot is docs/raffle.md#the-trust-model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from flashsale import draw_rule

MAX_SHOWN = 20  # discrepancies printed one by one; the rest are counted


@dataclass(frozen=True, slots=True)
class Entrant:
    digest: str  # hex, as published
    place: int | None


@dataclass(frozen=True, slots=True)
class Published:
    """A drawn raffle as the API shows it: the coupon body's draw fields and
    every page of its entries, in the order the pages gave them."""

    coupon: str
    commitment: str | None
    seed: str  # hex
    entries: int | None  # the body's count
    draw_winners: int | None
    waitlisted: int | None
    claimed_by: Sequence[str]  # user ids (empty when hidden from this reader)
    entrants: Sequence[Entrant]


@dataclass(slots=True)
class Verdict:
    discrepancies: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was found, for --user

    @property
    def ok(self) -> bool:
        return not self.discrepancies


def check_draw(published: Published, user: str | None = None) -> Verdict:
    """Every discrepancy between the published draw and the public rule."""
    verdict = Verdict()
    seed = _hex_bytes(published.seed, "draw_seed", verdict)
    _check_commitment(published, seed, verdict)
    digests = _entrant_digests(published.entrants, verdict)
    _check_counts(published, verdict)
    if seed is not None and digests is not None:
        _check_order(seed, digests, published.entrants, verdict)
    if digests is not None:
        _check_claimers(published, digests, verdict)
        if user is not None:
            _check_user(published, user, digests, verdict)
    return verdict


def shown(discrepancies: list[str]) -> list[str]:
    """At most MAX_SHOWN lines, then how many more there were."""
    rest = len(discrepancies) - MAX_SHOWN
    return discrepancies[:MAX_SHOWN] + ([f"... and {rest} more"] if rest > 0 else [])


def _hex_bytes(text: str | None, what: str, verdict: Verdict) -> bytes | None:
    try:
        value = bytes.fromhex(text or "")
    except ValueError:
        value = b""
    if len(value) != 32:
        verdict.discrepancies.append(f"{what} {text!r} is not 64 hex digits")
        return None
    return value


def _check_commitment(published: Published, seed: bytes | None, verdict: Verdict) -> None:
    if published.commitment is None:
        verdict.discrepancies.append("no draw_commitment published")
    elif seed is not None and draw_rule.commitment(seed) != published.commitment.lower():
        verdict.discrepancies.append(
            f"sha256(draw_seed) is {draw_rule.commitment(seed)}, "
            f"but the committed draw_commitment is {published.commitment}"
        )


def _entrant_digests(entrants: Sequence[Entrant], verdict: Verdict) -> list[bytes] | None:
    """The published digests as bytes, None (said why) if any is malformed or repeated."""
    digests: list[bytes] = []
    for index, entrant in enumerate(entrants):
        digest = _hex_bytes(entrant.digest, f"entrant #{index + 1}", verdict)
        if digest is None:
            return None
        digests.append(digest)
    if len(set(digests)) != len(digests):
        verdict.discrepancies.append(
            f"{len(digests) - len(set(digests))} entrant digests are listed more than once"
        )
        return None
    return digests


def _check_counts(published: Published, verdict: Verdict) -> None:
    listed = len(published.entrants)
    if published.entries != listed:
        verdict.discrepancies.append(
            f"the coupon says {published.entries} entries, the entries pages list {listed}"
        )
    winners = published.draw_winners
    if winners is None or not 0 <= winners <= listed:
        verdict.discrepancies.append(f"draw_winners {winners} is not between 0 and {listed}")
    losers = listed - (winners or 0)
    waiting = published.waitlisted
    if waiting is None or not 0 <= waiting <= losers:
        verdict.discrepancies.append(f"waitlisted {waiting} is not between 0 and {losers}")


def _check_order(
    seed: bytes, digests: list[bytes], entrants: Sequence[Entrant], verdict: Verdict
) -> None:
    """Place k (1-based) must be the k-th digest of draw_rule.draw_order."""
    order = draw_rule.draw_order(seed, digests)
    expected = {digest: place for place, digest in enumerate(order, 1)}
    wrong: list[str] = []
    for digest, entrant in zip(digests, entrants, strict=True):
        if entrant.place != expected[digest]:
            wrong.append(
                f"entrant {entrant.digest} is listed at place {entrant.place}, "
                f"the rule puts it at place {expected[digest]}"
            )
    verdict.discrepancies += wrong
    places = [entrant.place for entrant in entrants]
    if not wrong and places != sorted(places, key=lambda place: place or 0):
        verdict.discrepancies.append("the entries pages are not in order of place")


def _check_claimers(published: Published, digests: list[bytes], verdict: Verdict) -> None:
    """Each claimer is a winner or promoted from the waitlist (a place before
    the users still waiting), or, once nobody waits, anyone (first come)."""
    places = {digest: place for digest, place in zip(digests, _places(published), strict=True)}
    served = len(digests) - (published.waitlisted or 0)  # places 1..served had their turn
    for user_id in published.claimed_by:
        place = places.get(draw_rule.entrant_digest(user_id))
        if place is None and (published.waitlisted or 0) > 0:
            verdict.discrepancies.append(
                f"{user_id!r} holds a claim without having entered, "
                f"while {published.waitlisted} entrants still wait"
            )
        elif place is not None and place > served:
            verdict.discrepancies.append(
                f"{user_id!r} holds a claim from place {place}, "
                f"but places after {served} are still waitlisted"
            )


def _check_user(published: Published, user: str, digests: list[bytes], verdict: Verdict) -> None:
    digest = draw_rule.entrant_digest(user)
    if digest not in digests:
        verdict.discrepancies.append(
            f"user {user!r} (entrant {digest.hex()}) is not among the {len(digests)} entrants"
        )
        return
    place = _places(published)[digests.index(digest)]
    outcome = "won" if place <= (published.draw_winners or 0) else "waitlisted at the draw"
    verdict.notes.append(
        f"user {user!r}: entrant {digest.hex()}, place {place} of {len(digests)} ({outcome})"
    )


def _places(published: Published) -> list[int]:
    return [entrant.place or 0 for entrant in published.entrants]
