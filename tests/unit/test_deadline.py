"""The request deadline: a 503 when time runs out, nothing otherwise."""

from __future__ import annotations

import asyncio

import pytest

from flashsale.domain import ServiceUnavailable
from flashsale.service.deadline import deadline


async def test_work_that_finishes_in_time_is_untouched() -> None:
    async with deadline(1):
        await asyncio.sleep(0)
    await asyncio.sleep(0.01)  # no stray cancellation arrives afterwards


async def test_work_past_the_deadline_becomes_service_unavailable() -> None:
    with pytest.raises(ServiceUnavailable):
        async with deadline(0.01):
            await asyncio.sleep(1)
    await asyncio.sleep(0)  # the task is usable again


async def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    async def waits() -> None:
        async with deadline(5):
            await asyncio.sleep(5)

    task = asyncio.create_task(waits())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
