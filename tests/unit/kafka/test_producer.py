"""KafkaSender with fake backends: acknowledgements, 503s and client replacement."""

from __future__ import annotations

from collections.abc import Sequence

import orjson
import pytest

from chalicelib.errors import ProduceError
from chalicelib.kafka.producer import BackendFactory, KafkaSender, Message, visitor_messages


class FakeBackend:
    def __init__(self, fail: Exception | None = None) -> None:
        self.fail = fail
        self.sent: list[tuple[str, bytes | None, bytes]] = []
        self.closed = False

    def send_all(self, topic: str, messages: Sequence[Message], timeout_s: float) -> None:
        if self.fail is not None:
            raise self.fail
        self.sent.extend((topic, key, value) for key, value, _ in messages)

    def close(self, timeout_s: float) -> None:
        self.closed = True


def _factory(*backends: FakeBackend) -> BackendFactory:
    made = iter(backends)
    return lambda: next(made)


def test_groups_a_requests_events_into_one_message_per_visitor() -> None:
    events = [
        {"event_id": "1", "anonymous_id": "a"},
        {"event_id": "2", "anonymous_id": "b"},
        {"event_id": "3", "anonymous_id": "a"},
        {"event_id": "4", "anonymous_id": ""},
    ]
    messages = visitor_messages(events, project_id="p", schema_version=2)
    assert [key for key, _, _ in messages] == [b"a", b"b", b"4"]
    value = orjson.loads(messages[0][1])
    assert [value["shared"] | e for e in value["events"]] == [events[0], events[2]]
    assert dict(messages[0][2]) == {"project": b"p", "schema": b"2"}


def test_fields_a_messages_events_share_are_sent_once() -> None:
    common = {"anonymous_id": "a", "user_agent": "Mozilla/5.0 " * 10, "url": "https://shop.example/"}
    events = [common | {"event_id": str(n), "type": "click" if n else "pageView"} for n in range(5)]
    events[4]["url"] = "https://shop.example/next"
    (message,) = visitor_messages(events, project_id="p", schema_version=2)
    value = orjson.loads(message[1])
    assert value["shared"] == {"anonymous_id": "a", "user_agent": common["user_agent"]}
    assert value["events"][4] == {"event_id": "4", "type": "click", "url": "https://shop.example/next"}
    assert [value["shared"] | e for e in value["events"]] == events
    assert message[1].count(b"Mozilla") == 10  # the user agent once, not five times


def test_send_passes_every_message_and_reuses_the_client() -> None:
    backend = FakeBackend()
    sender = KafkaSender(_factory(backend), timeout_s=1)
    sender.send("t", [(b"k", b"v", [])])
    sender.send("t", [(b"k2", b"v2", [])])
    assert backend.sent == [("t", b"k", b"v"), ("t", b"k2", b"v2")]


def test_a_failed_send_raises_produce_error_and_replaces_the_client() -> None:
    broken, healthy = FakeBackend(fail=RuntimeError("InitProducerId failed")), FakeBackend()
    sender = KafkaSender(_factory(broken, healthy), timeout_s=1, retry_after=7)
    with pytest.raises(ProduceError) as info:
        sender.send("t", [(b"k", b"v", [])])
    assert info.value.status == 503
    assert info.value.retry_after == 7
    assert broken.closed
    sender.send("t", [(b"k", b"v", [])])
    assert healthy.sent


def test_an_unreachable_broker_at_client_creation_is_a_503() -> None:
    def factory() -> FakeBackend:
        raise OSError("connection refused")

    with pytest.raises(ProduceError) as info:
        KafkaSender(factory, timeout_s=1).send("t", [(b"k", b"v", [])])
    assert "unreachable" in info.value.message
