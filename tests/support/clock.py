"""A clock the test moves by hand (``clock.now += 0.5``), for the parts that
take one (``clock=``): no sleep, no timed assertion."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class HandClock:
    now: float

    def __call__(self) -> float:
        return self.now
