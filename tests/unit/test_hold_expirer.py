"""The hold sweeper's loop: it keeps sweeping through a database that is
away or a bug in one sweep, reports what it expired, and stops on close."""

from __future__ import annotations

import asyncio

from flashsale.domain import ServiceUnavailable
from flashsale.service.expiry import HoldExpirer


class ScriptedSweeper:
    def __init__(self, answers: list[int | BaseException]) -> None:
        self.answers = answers
        self.calls = 0

    async def expire_holds(self) -> int:
        self.calls += 1
        answer = self.answers.pop(0) if self.answers else 0
        if isinstance(answer, BaseException):
            raise answer
        return answer


async def test_a_sweep_survives_an_unavailable_database_and_a_bug() -> None:
    sweeper = ScriptedSweeper([ServiceUnavailable("down"), RuntimeError("bug"), 3])
    reported: list[int] = []
    expirer = HoldExpirer(sweeper, interval=0.001, on_expired=reported.append)
    assert await expirer.sweep_once() == 0
    assert await expirer.sweep_once() == 0
    assert await expirer.sweep_once() == 3
    assert (expirer.expired, reported) == (3, [3])


async def test_the_loop_sweeps_until_closed() -> None:
    sweeper = ScriptedSweeper([1, 2])
    expirer = HoldExpirer(sweeper, interval=0.001)
    expirer.start()
    for _ in range(200):
        if sweeper.calls >= 3:
            break
        await asyncio.sleep(0.001)
    await expirer.close()
    calls = sweeper.calls
    await asyncio.sleep(0.01)
    assert sweeper.calls == calls >= 3
    assert expirer.expired == 3
