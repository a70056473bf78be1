"""The streams' messages (issue 25: streams that cost the same for one
listener or many): every dashboard stream of a worker gets the same
snapshot object from the feed's one poller, and every events stream the
same events from its window; each is encoded once, into one message whose
bytes are made once, however many streams send it."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from flashsale.http import events as events_module
from flashsale.http.dashboard import snapshot_message
from flashsale.http.events import SENT_MAX, event_message
from flashsale.service.dashboard import DashboardSnapshot
from flashsale.service.ports import Event


def test_one_snapshot_is_one_message_encoded_once_for_every_stream() -> None:
    snapshot = DashboardSnapshot(at=1.0, database="ok")
    sent = [snapshot_message(snapshot) for _ in range(300)]
    assert all(message is sent[0] for message in sent)
    first = sent[0].encode()
    assert all(message.encode() is first for message in sent)
    head, data = first.decode().split("\r\n", 1)
    assert head == "event: snapshot"
    assert json.loads(data.removeprefix("data: ")) == {"at": 1.0, "database": "ok", "coupons": []}


def test_a_new_snapshot_is_a_new_message() -> None:
    first = snapshot_message(DashboardSnapshot(at=1.0, database="ok"))
    second = snapshot_message(DashboardSnapshot(at=2.0, database="unavailable"))
    assert second is not first
    assert b'"unavailable"' in second.encode()


def event(event_id: int) -> Event:
    at = datetime(2026, 12, 7, tzinfo=UTC)
    return Event(event_id, 7, "XMAS", event_id, "claimed", "alice", at, {})


def test_an_event_is_encoded_once_for_every_stream_that_sends_it() -> None:
    # Streams read the same Event objects from the feed's window.
    shared = event(1)
    sent = [event_message(shared) for _ in range(300)]
    assert all(message is sent[0] for message in sent)
    assert all(message.encode() is sent[0].encode() for message in sent)
    text = sent[0].encode().decode()
    assert "event: claimed" in text
    assert "id: " in text


def test_an_event_read_anew_is_encoded_anew() -> None:
    # A stream catching up reads its own Event objects; another database's
    # event 1 (a test's, or after a reset) must never get this one's message.
    first = event_message(event(1))
    other = Event(1, 8, "OTHER", 1, "released", "bob", datetime(2026, 12, 8, tzinfo=UTC), {})
    again = event_message(other)
    assert again is not first
    assert "event: released" in again.encode().decode()
    assert "OTHER" in again.encode().decode()


def test_the_events_kept_encoded_are_bounded() -> None:
    kept = [event(event_id) for event_id in range(SENT_MAX + 50)]
    messages = [event_message(e) for e in kept]
    assert event_message(kept[-1]) is messages[-1]
    assert len(events_module._SENT) == SENT_MAX
    assert event_message(kept[0]) is not messages[0]  # the oldest went first
