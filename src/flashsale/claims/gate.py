"""Releases gathered before they join a claim batch.

A release rides its coupon's next claim batch (claims/batched.py). At a
steady rate of releases nearly every batch would then carry one or two, and
each such batch pays the releases' fixed cost in PostgreSQL: the DELETE,
the stock trigger's second update of the coupon row in the transaction, the
history and event inserts, much the same whether it releases one claim or
fifty (measured in docs/benchmarks.md). So a coupon's releases wait at its gate until
``seconds`` have passed since the first of them arrived, or ``most`` are
waiting, and then enter the claim lane together, where one batch decides
them all. A storm fills the gate at once and does not wait.

Nothing is decided at the gate: a release that is cancelled there (its
client left, its deadline passed) never reached the database."""

from __future__ import annotations

import asyncio


class _Gathering:
    __slots__ = ("opened", "timer", "waiting")

    def __init__(self, timer: asyncio.TimerHandle) -> None:
        self.opened = asyncio.Event()
        self.timer = timer
        self.waiting = 0


class ReleaseGate:
    def __init__(self, *, seconds: float, most: int) -> None:
        self._seconds = seconds
        self._most = most
        self._gatherings: dict[str, _Gathering] = {}

    async def wait(self, coupon_name: str) -> None:
        """Returns when this coupon's gathered releases may go on."""
        if self._seconds <= 0:
            return
        gathering = self._gatherings.get(coupon_name)
        if gathering is None:
            loop = asyncio.get_running_loop()
            timer = loop.call_later(self._seconds, self._open, coupon_name)
            gathering = self._gatherings[coupon_name] = _Gathering(timer)
        gathering.waiting += 1
        if gathering.waiting >= self._most:
            self._open(coupon_name)
        await gathering.opened.wait()

    def open_all(self) -> None:
        """Every gate at once (shutdown: nothing waits for a timer)."""
        for coupon_name in list(self._gatherings):
            self._open(coupon_name)

    def _open(self, coupon_name: str) -> None:
        gathering = self._gatherings.pop(coupon_name, None)
        if gathering is not None:
            gathering.timer.cancel()
            gathering.opened.set()
