"""Validation of collect bodies: request-level errors raise, event-level ones reject one event."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest

from chalicelib.collect import events
from chalicelib.errors import PayloadTooLargeError, RequestError


def _event(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"event_id": str(uuid.uuid4()), "type": "pageView", "ts": 1_764_000_000_000}
    event.update(overrides)
    return event


def _body(*evs: Any, **top: Any) -> bytes:
    doc: dict[str, Any] = {"api_key": "YOUR_API_KEY", "events": list(evs)}
    doc.update(top)
    return orjson.dumps(doc)


def test_accepts_a_valid_batch_and_normalises_the_event_id() -> None:
    upper = str(uuid.uuid4()).upper()
    batch = events.parse_body(_body(_event(event_id=upper)))
    assert batch.api_key == "YOUR_API_KEY"
    assert [e.event_id for e in batch.events] == [upper.lower()]
    assert batch.rejected == []


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        (b"", "body", "empty_body"),
        (b"{not json", "body", "invalid_json"),
        (b"[1, 2]", "body", "invalid_body"),
        (orjson.dumps({"events": [_event()]}), "api_key", "bad_request"),
        (orjson.dumps({"api_key": 5, "events": [_event()]}), "api_key", "bad_request"),
        (orjson.dumps({"api_key": "k", "events": {}}), "events", "bad_request"),
        (orjson.dumps({"api_key": "k", "events": []}), "events", "empty_batch"),
        (orjson.dumps({"api_key": "k", "sent_at": "yesterday", "events": [_event()]}), "sent_at", "bad_request"),
        (orjson.dumps({"api_key": "k", "context": [], "events": [_event()]}), "context", "bad_request"),
    ],
)
def test_rejects_malformed_requests_naming_the_field(body: bytes, field: str, code: str) -> None:
    with pytest.raises(RequestError) as info:
        events.parse_body(body)
    assert info.value.field == field
    assert info.value.code == code
    assert info.value.status == 400


def test_rejects_body_over_size_limit_with_413() -> None:
    with pytest.raises(PayloadTooLargeError) as info:
        events.parse_body(b" " * (events.MAX_BODY_BYTES + 1))
    assert info.value.status == 413


def test_rejects_batch_over_event_limit_with_413() -> None:
    with pytest.raises(PayloadTooLargeError) as info:
        events.parse_body(_body(*[_event() for _ in range(events.MAX_EVENTS_PER_BATCH + 1)]))
    assert info.value.code == "too_many_events"


def _deep(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        node = {"n": node}
    return node


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("not an object", "event must be an object"),
        (_event(event_id="nope"), "event_id is not a valid UUID"),
        (_event(event_id=7), "event_id must be a UUID string"),
        (_event(type=""), "type must be a non-empty string"),
        (_event(type="x" * 65), "type must be at most 64"),
        (_event(type="bad\nname"), "printable"),
        (_event(ts="soon"), "ts is not an ISO-8601 timestamp"),
        (_event(ts=True), "ts must be epoch milliseconds"),
        (_event(ts=1_764_000_000), "ts is out of range"),
        (_event(props=[1]), "props must be an object"),
        (_event(props=_deep(events.MAX_PROPS_DEPTH + 1)), "nested deeper"),
        (_event(props={"s": "x" * (events.MAX_PROP_STRING + 1)}), "props.s longer"),
        (_event(props={str(i): i for i in range(events.MAX_PROPS_ITEMS + 1)}), "more than 200"),
        (_event(context={"url": 5}), "context.url must be a string"),
        (_event(context={"url": "x" * (events.MAX_CONTEXT_STRING + 1)}), "context.url longer"),
        (_event(context={"anonymous_id": "a" * 129}), "context.anonymous_id longer"),
    ],
)
def test_rejects_one_bad_event_with_its_index_and_keeps_the_rest(bad: Any, reason: str) -> None:
    good = _event()
    batch = events.parse_body(_body(good, bad))
    assert [e.event_id for e in batch.events] == [good["event_id"]]
    assert len(batch.rejected) == 1
    assert batch.rejected[0]["index"] == 1
    assert reason in str(batch.rejected[0]["reason"])


def test_accepts_props_at_the_depth_limit() -> None:
    batch = events.parse_body(_body(_event(props=_deep(events.MAX_PROPS_DEPTH))))
    assert batch.rejected == []
    assert orjson.loads(batch.events[0].props_json) == _deep(events.MAX_PROPS_DEPTH)


def test_iso_timestamps_are_read_as_utc_milliseconds() -> None:
    assert events.parse_timestamp("2025-11-24T16:00:00Z", "ts") == 1_764_000_000_000
    assert events.parse_timestamp("2025-11-24T17:00:00+01:00", "ts") == 1_764_000_000_000
    assert events.parse_timestamp(1_764_000_000_000.9, "ts") == 1_764_000_000_000


def test_batch_context_is_shared_and_event_context_overrides_it() -> None:
    batch = events.parse_body(
        _body(
            _event(context={"url": "https://a.example/x"}),
            _event(),
            context={"url": "https://a.example/", "anonymous_id": "v1", "ignored_field": "x"},
        )
    )
    first, second = batch.events
    assert first.context == {"url": "https://a.example/x", "anonymous_id": "v1"}
    assert second.context == {"url": "https://a.example/", "anonymous_id": "v1"}
