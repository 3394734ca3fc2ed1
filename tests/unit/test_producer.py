"""KafkaSender with a fake kafka-python producer: acknowledgements, 503s and client replacement."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from chalicelib.errors import ProduceError
from chalicelib.producer import KafkaSender, visitor_messages


class FakeFuture:
    """kafka-python's FutureRecordMetadata, reduced to get()."""

    def __init__(self, error: Exception | None) -> None:
        self.error = error

    def get(self, timeout: float | None = None) -> None:
        if self.error is not None:
            raise self.error


class FakeProducer:
    def __init__(self, fail: Exception | None = None) -> None:
        self.fail = fail
        self.sent: list[tuple[str, bytes | None, bytes]] = []
        self.closed = False

    def send(self, topic: str, *, key: bytes | None, value: bytes, headers: Any) -> FakeFuture:
        if self.fail is None:
            self.sent.append((topic, key, value))
        return FakeFuture(self.fail)

    def flush(self, timeout: float | None = None) -> None:
        pass

    def close(self, timeout: float | None = None) -> None:
        self.closed = True


def test_groups_a_requests_events_into_one_message_per_visitor() -> None:
    events = [
        {"event_id": "1", "anonymous_id": "a"},
        {"event_id": "2", "anonymous_id": "b"},
        {"event_id": "3", "anonymous_id": "a"},
        {"event_id": "4", "anonymous_id": ""},
    ]
    messages = visitor_messages(events, project_id="p", schema_version=1)
    assert [key for key, _, _ in messages] == [b"a", b"b", b"4"]
    assert [e["event_id"] for e in orjson.loads(messages[0][1])["events"]] == ["1", "3"]
    assert dict(messages[0][2]) == {"project": b"p", "schema": b"1"}


def test_send_waits_for_every_acknowledgement() -> None:
    producer = FakeProducer()
    sender = KafkaSender(lambda: producer, timeout_s=1)
    sender.send("t", [(b"k", b"v", [])])
    assert producer.sent == [("t", b"k", b"v")]


def test_a_failed_send_raises_produce_error_and_replaces_the_client() -> None:
    broken, healthy = FakeProducer(fail=RuntimeError("InitProducerId failed")), FakeProducer()
    made = iter([broken, healthy])
    sender = KafkaSender(lambda: next(made), timeout_s=1, retry_after=7)
    with pytest.raises(ProduceError) as info:
        sender.send("t", [(b"k", b"v", [])])
    assert info.value.status == 503
    assert info.value.retry_after == 7
    assert broken.closed
    sender.send("t", [(b"k", b"v", [])])
    assert healthy.sent


def test_an_unreachable_broker_at_client_creation_is_a_503() -> None:
    def factory() -> Any:
        raise OSError("connection refused")

    with pytest.raises(ProduceError) as info:
        KafkaSender(factory, timeout_s=1).send("t", [(b"k", b"v", [])])
    assert "unreachable" in info.value.message
