"""How many Idempotency-Keys each caller may store: counted per worker, in
fixed windows as long as a key lives (IDEMPOTENCY_TTL), so at any moment a
caller's stored keys are at most twice its quota per worker (a key stored
at the end of one window lives into the next).

Counted here, in the process, rather than in SQL: a count per identity in
the database would be a row that every keyed batch of the backend updates
(one hot row serializing every coupon's batches) or a count of the keys at
each claim (a query more per batch). The claim path pays a dict lookup.

The table of identities is bounded too: it holds at most MAX_IDENTITIES,
and is emptied when full (a caller able to present that many identities in
one window, e.g. as many client addresses, then starts again from zero;
each of them was still held to its quota)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from flashsale.domain import TooManyKeys

MAX_IDENTITIES = 100_000

log = logging.getLogger("flashsale.idempotency")


class KeyQuota:
    def __init__(
        self,
        per_identity: int,
        per_credential: int,
        window: float,
        clock: Callable[[], float] = time.monotonic,
        max_identities: int = MAX_IDENTITIES,
    ) -> None:
        self._limits = (per_identity, per_credential)
        self._window = window
        self._clock = clock
        self._max = max_identities
        self._ends = clock() + window
        self._counts: dict[str, int] = {}

    def admit(self, identity: str, *, credential: bool) -> None:
        """Counts one key for ``identity``; TooManyKeys (429) past its quota."""
        now = self._clock()
        if now >= self._ends:
            self._counts.clear()
            self._ends = now + self._window
        count = self._counts.get(identity, 0)
        limit = self._limits[credential]
        if count >= limit:
            retry = max(1, math.ceil(self._ends - now))
            raise TooManyKeys(
                f"this caller stored {limit} Idempotency-Keys, its quota, in this "
                f"window: retry after {retry} s, or send the request without a key",
                retry_after=retry,
            )
        if count == 0 and len(self._counts) >= self._max:
            log.warning("idempotency key quotas: %d identities in one window, reset", self._max)
            self._counts.clear()
        self._counts[identity] = count + 1
