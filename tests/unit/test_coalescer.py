"""The coalescer on its own, with a plain async function as the batch runner."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from flashsale.claims.coalescer import Coalescer
from flashsale.domain import ServiceUnavailable


class Recorder:
    """Runs batches by echoing items, recording each batch; can be held."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, key: str, items: Sequence[str]) -> list[str]:
        self.batches.append(list(items))
        await self.gate.wait()
        return [f"{key}:{item}" for item in items]


def held(*, max_batch: int, max_queue: int) -> tuple[Recorder, Coalescer[str, str, str]]:
    """A coalescer whose batches wait at the recorder until its gate opens."""
    recorder = Recorder()
    recorder.gate.clear()
    return recorder, Coalescer(recorder, max_batch=max_batch, max_queue=max_queue)


async def sent(
    recorder: Recorder, coalescer: Coalescer[str, str, str], item: str
) -> asyncio.Task[str]:
    """``item`` submitted under key "k", returned once its batch is at the recorder."""
    task = asyncio.create_task(coalescer.submit("k", item))
    for _ in range(100):  # event-loop ticks, no clock involved
        if any(item in batch for batch in recorder.batches):
            return task
        await asyncio.sleep(0)
    raise AssertionError(f"{item!r} was never sent")


async def test_a_lone_item_goes_at_once_in_a_batch_of_one() -> None:
    recorder = Recorder()
    coalescer = Coalescer(recorder, max_batch=10, max_queue=10)
    assert await coalescer.submit("k", "a") == "k:a"
    assert recorder.batches == [["a"]]


async def test_items_arriving_while_a_batch_is_in_flight_go_together_in_order() -> None:
    recorder, coalescer = held(max_batch=10, max_queue=100)
    first = await sent(recorder, coalescer, "first")
    rest = [asyncio.create_task(coalescer.submit("k", f"u{i}")) for i in range(5)]
    await asyncio.sleep(0)
    recorder.gate.set()
    assert await first == "k:first"
    assert [await task for task in rest] == [f"k:u{i}" for i in range(5)]
    assert recorder.batches == [["first"], [f"u{i}" for i in range(5)]]


async def test_batches_never_exceed_the_cap() -> None:
    recorder, coalescer = held(max_batch=3, max_queue=100)
    tasks = [asyncio.create_task(coalescer.submit("k", str(i))) for i in range(8)]
    await asyncio.sleep(0)
    recorder.gate.set()
    await asyncio.gather(*tasks)
    assert [len(batch) for batch in recorder.batches] == [3, 3, 2]
    assert [item for batch in recorder.batches for item in batch] == [str(i) for i in range(8)]


async def test_keys_have_their_own_lanes() -> None:
    recorder = Recorder()
    coalescer = Coalescer(recorder, max_batch=10, max_queue=10)
    results = await asyncio.gather(coalescer.submit("a", "1"), coalescer.submit("b", "1"))
    assert list(results) == ["a:1", "b:1"]
    assert sorted(recorder.batches) == [["1"], ["1"]]


async def test_a_full_queue_answers_service_unavailable() -> None:
    recorder, coalescer = held(max_batch=1, max_queue=2)
    tasks = [await sent(recorder, coalescer, "in-flight")]
    tasks += [asyncio.create_task(coalescer.submit("k", str(i))) for i in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(ServiceUnavailable):
        await coalescer.submit("k", "overflow")
    recorder.gate.set()
    assert len(await asyncio.gather(*tasks)) == 3


async def test_a_failed_batch_fails_every_waiter_and_the_lane_recovers() -> None:
    calls = 0

    async def flaky(key: str, items: Sequence[str]) -> list[str]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        if calls == 1:
            raise ServiceUnavailable("database down")
        return list(items)

    coalescer: Coalescer[str, str, str] = Coalescer(flaky, max_batch=10, max_queue=10)
    results = await asyncio.gather(
        *(coalescer.submit("k", str(i)) for i in range(3)), return_exceptions=True
    )
    assert all(isinstance(result, ServiceUnavailable) for result in results)
    assert await coalescer.submit("k", "again") == "again"


async def test_a_waiter_cancelled_before_its_batch_is_sent_is_left_out() -> None:
    recorder, coalescer = held(max_batch=10, max_queue=10)
    first = await sent(recorder, coalescer, "first")
    gone = asyncio.create_task(coalescer.submit("k", "gone"))
    kept = asyncio.create_task(coalescer.submit("k", "kept"))
    await asyncio.sleep(0)
    gone.cancel()
    recorder.gate.set()
    assert await first == "k:first"
    assert await kept == "k:kept"
    assert recorder.batches == [["first"], ["kept"]]


async def test_close_waits_for_batches_in_flight() -> None:
    recorder, coalescer = held(max_batch=10, max_queue=10)
    task = await sent(recorder, coalescer, "a")
    closing = asyncio.create_task(coalescer.close())
    await asyncio.sleep(0)
    assert not closing.done()
    recorder.gate.set()
    await closing
    assert await task == "k:a"
