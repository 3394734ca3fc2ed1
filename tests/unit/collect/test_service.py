"""The collect use-case's own checks: event age after skew correction, and the size of what goes to Kafka."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from chalicelib.collect import service as collect_module
from chalicelib.collect.ratelimit import RateLimiter
from chalicelib.collect.service import RequestMeta, collect
from chalicelib.errors import PayloadTooLargeError, RequestError
from chalicelib.projects import SqliteProjectStore

NOW = 1_764_000_000_000
DAY = 86_400_000


class RecordingSender:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    def send(self, topic: str, messages: Any) -> None:
        self.messages.extend(messages)


def _collect(tmp_path: Path, events: list[dict[str, Any]], sender: RecordingSender, **body: Any) -> Any:
    return collect(
        orjson.dumps({"api_key": "YOUR_API_KEY", "events": events} | body),
        request=RequestMeta(headers={"content-type": "text/plain", "user-agent": "Mozilla/5.0 Firefox/140.0"}),
        projects=SqliteProjectStore(tmp_path / "projects.sqlite3"),
        stage="dev",
        salt=b"salt",
        limiter=RateLimiter(),
        sender=sender,  # type: ignore[arg-type]
        topic="t",
        now_ms=lambda: NOW,
    )


def _event(ts: int) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "type": "pageView", "ts": ts, "context": {"anonymous_id": "v"}}


def test_events_older_than_31_days_after_skew_correction_are_rejected_one_by_one(tmp_path: Path) -> None:
    sender = RecordingSender()
    result = _collect(tmp_path, [_event(NOW - 32 * DAY), _event(NOW - 30 * DAY), _event(NOW - DAY)], sender)
    assert result.body["accepted"] == 2
    assert result.body["rejected"] == [
        {"index": 0, "reason": "ts is more than 31 days before the server's time (after clock-skew correction)"}
    ]
    # The client's clock is a year slow: sent_at corrects it, so a minute-old event is kept.
    late_clock = NOW - 365 * DAY
    assert _collect(tmp_path, [_event(late_clock - 60_000)], sender, sent_at=late_clock).body["accepted"] == 1


def test_a_batch_of_only_stale_events_is_a_400(tmp_path: Path) -> None:
    with pytest.raises(RequestError) as info:
        _collect(tmp_path, [_event(NOW - 40 * DAY)], RecordingSender())
    assert (info.value.status, info.value.code) == (400, "no_valid_events")


def test_a_message_kafka_would_refuse_is_a_413_telling_the_client_to_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(collect_module, "MAX_MESSAGE_BYTES", 2_000)
    sender = RecordingSender()
    events = [_event(NOW) | {"props": {"text": "x" * 500, "n": n}} for n in range(5)]
    with pytest.raises(PayloadTooLargeError) as info:
        _collect(tmp_path, events, sender)
    assert (info.value.status, info.value.code, info.value.field) == (413, "message_too_large", "events")
    assert "smaller batches" in info.value.message
    assert sender.messages == []  # nothing half-sent
    assert _collect(tmp_path, events[:1], sender).body["accepted"] == 1
