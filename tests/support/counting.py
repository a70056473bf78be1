"""A real reader wrapped to count its polls: how tests see that viewers of
one worker share one poller."""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class Counting(Generic[T]):
    """Subclasses forward the polled method to ``poll()``, which counts it."""

    def __init__(self, inner: T) -> None:
        self.inner = inner
        self.polls = 0

    def poll(self) -> T:
        self.polls += 1
        return self.inner
