"""A batch's bounds: at most max_events events and max_bytes of body, the
longest prefix of the stream's events in seq order, and an event larger
than the byte bound still goes, alone (it cannot be split)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from flashsale.config import SettingsError, load_settings
from flashsale.service.delivery import Batching, batch_body
from flashsale.service.ports import Event


def events(*sizes: int) -> list[Event]:
    at = datetime(2026, 12, 6, tzinfo=UTC)
    return [
        Event(number, 1, "HOT", number, "claimed", "x" * size, at, {})
        for number, size in enumerate(sizes, 1)
    ]


def encode(event: Event) -> bytes:
    return json.dumps({"id": event.event_id, "user_id": event.user_id}).encode()


def test_a_batch_is_the_longest_prefix_within_count_and_bytes() -> None:
    taken, bodies = Batching(3, 1024).fill(events(10, 10, 10, 10), encode)
    assert [event.seq for event in taken] == [1, 2, 3]
    taken, bodies = Batching(100, 100).fill(events(30, 30, 30), encode)
    assert [event.seq for event in taken] == [1]  # two would pass 100 bytes
    body = batch_body(bodies)
    assert len(body) <= 100
    assert json.loads(body) == {"type": "batch", "events": [{"id": 1, "user_id": "x" * 30}]}


def test_an_event_larger_than_the_bound_goes_alone() -> None:
    taken, _ = Batching(100, 64).fill(events(500, 1), encode)
    assert [event.seq for event in taken] == [1]
    taken, bodies = Batching(100, 1024).fill(events(1, 1, 5000), encode)
    assert [event.seq for event in taken] == [1, 2]  # the large one waits for its own batch
    assert len(batch_body(bodies)) <= 1024


def test_the_batch_settings_are_bounded() -> None:
    assert load_settings({}).webhook_batch_max == 1  # off: one event per POST
    for variable, value in (
        ("WEBHOOK_BATCH_MAX", "0"),
        ("WEBHOOK_BATCH_MAX", "1001"),
        ("WEBHOOK_BATCH_BYTES", "100"),
        ("WEBHOOK_BATCH_BYTES", str(9 << 20)),
        ("WEBHOOK_DELIVER_NICE", "20"),
    ):
        with pytest.raises(SettingsError, match=variable):
            load_settings({variable: value})
