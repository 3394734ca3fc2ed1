"""The ingest use-case with fakes for ClickHouse and the DLQ: what is inserted, what is dead-lettered."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import orjson
import pytest

from chalicelib.clickhouse import EVENT_COLUMNS
from chalicelib.collect import RequestMeta, _client_fields
from chalicelib.enrich import enrich
from chalicelib.errors import StorageError
from chalicelib.events import RawEvent
from chalicelib.ingest import dedup_token, ingest
from chalicelib.kafka_event import build_event, decode_records, encode_record
from chalicelib.projects import dev_project


class FakeWriter:
    def __init__(self, fail: bool = False) -> None:
        self.events: list[tuple[list[Any], str]] = []
        self.dead: list[Sequence[Any]] = []
        self.looked_up: list[tuple[str, int, str, str]] = []
        self.fail = fail

    def insert_events(self, rows: Sequence[Sequence[Any]], *, dedup_token: str) -> None:
        if self.fail:
            raise StorageError("boom")
        self.events.append((list(rows), dedup_token))

    def insert_dead_letters(self, rows: Sequence[Sequence[Any]]) -> None:
        self.dead.extend(rows)

    def stored_event_ids(self, keys: Sequence[tuple[str, int, str, str]]) -> set[tuple[str, str]]:
        self.looked_up.extend(keys)
        ids = {row[3] for rows, _ in self.events for row in rows}
        return {(p, e) for p, _, _, e in keys if e in ids}


class FakeDlq:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []

    def send(self, topic: str, messages: Sequence[Any]) -> None:
        self.sent.extend((topic, m) for m in messages)


def _normalised() -> dict[str, object]:
    raw = RawEvent(0, str(uuid.uuid4()), "pageView", 1_764_000_000_000, "{}", {"url": "https://a.example/"})
    client = _client_fields(dev_project(), RequestMeta(headers={"user-agent": "Mozilla/5.0 Firefox/140.0"}), b"salt")
    return enrich(raw, project_id="p", sent_at_ms=None, received_at_ms=1_764_000_000_100, client=client)


def _record(offset: int, value: bytes, partition: int = 0) -> dict[str, object]:
    return encode_record(topic="events", partition=partition, offset=offset, timestamp=0, key=b"v", value=value)


def _envelope(*events: object) -> bytes:
    return orjson.dumps({"v": 1, "events": list(events)})


def test_an_event_resent_within_the_same_batch_is_written_once() -> None:
    writer, dlq = FakeWriter(), FakeDlq()
    event = _normalised()
    payload = build_event(
        [_record(1, _envelope(event)), _record(2, _envelope(event, _normalised()))], bootstrap_servers="b"
    )
    result = ingest(payload, writer=writer, dlq=dlq, dlq_topic="dlq", now_ms=lambda: 0)
    assert (result["inserted"], result["duplicates"]) == (2, 1)
    rows, _ = writer.events[0]
    assert [row[-1] for row in rows] == [1, 2]  # the first copy (offset 1) is the one kept


def test_a_resent_event_already_stored_is_dropped_and_only_resent_ones_are_looked_up() -> None:
    writer, dlq = FakeWriter(), FakeDlq()
    first = _normalised()
    ingest(
        build_event([_record(1, _envelope(first))], bootstrap_servers="b"),
        writer=writer,
        dlq=dlq,
        dlq_topic="d",
        now_ms=lambda: 0,
    )
    assert writer.looked_up == []
    again, new = first | {"resent": 1}, _normalised() | {"resent": 1}
    result = ingest(
        build_event([_record(2, _envelope(again, new, _normalised()))], bootstrap_servers="b"),
        writer=writer,
        dlq=dlq,
        dlq_topic="d",
        now_ms=lambda: 0,
    )
    assert (result["inserted"], result["duplicates"]) == (2, 1)
    assert [key[3] for key in writer.looked_up] == [first["event_id"], new["event_id"]]
    assert first["event_id"] not in [row[3] for row in writer.events[1][0]]


def test_inserts_every_event_of_every_record_in_one_insert_with_provenance() -> None:
    writer, dlq = FakeWriter(), FakeDlq()
    payload = build_event(
        [_record(4, _envelope(_normalised(), _normalised())), _record(9, _envelope(_normalised()), 1)],
        bootstrap_servers="b",
    )
    result = ingest(payload, writer=writer, dlq=dlq, dlq_topic="dlq", now_ms=lambda: 0)
    assert result == {"records": 2, "inserted": 3, "duplicates": 0, "dead_lettered": 0}
    assert len(writer.events) == 1
    rows, _ = writer.events[0]
    assert all(len(row) == len(EVENT_COLUMNS) for row in rows)
    assert [row[-3:] for row in rows] == [("events", 0, 4), ("events", 0, 4), ("events", 1, 9)]
    assert dlq.sent == []


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"not json", "value is not JSON"),
        (orjson.dumps([1]), "envelope"),
        (orjson.dumps({"v": 99, "events": []}), "unknown schema version 99"),
    ],
)
def test_dead_letters_unreadable_records_and_stores_the_rest(value: bytes, reason: str) -> None:
    writer, dlq = FakeWriter(), FakeDlq()
    payload = build_event([_record(1, value), _record(2, _envelope(_normalised()))], bootstrap_servers="b")
    result = ingest(payload, writer=writer, dlq=dlq, dlq_topic="dlq", now_ms=lambda: 5)
    assert result["inserted"] == 1
    assert result["dead_lettered"] == 1
    topic, (_key, dlq_value, headers) = dlq.sent[0]
    assert topic == "dlq"
    assert dlq_value == value
    header = dict(headers)
    assert reason in header["reason"].decode()
    assert (header["source_topic"], header["source_partition"], header["source_offset"]) == (b"events", b"0", b"1")
    assert writer.dead[0][1] == header["reason"].decode()
    assert list(writer.dead[0][2:6]) == ["events", 0, 1, -1]


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda e: e.pop("url"), "missing field url"),
        (lambda e: e.update(event_id="nope"), "event_id is not a UUID"),
        (lambda e: e.update(title=5), "title must be a string"),
        (lambda e: e.update(timestamp="x"), "timestamp must be epoch milliseconds"),
        (lambda e: e.update(timestamp=-1), "timestamp must be epoch milliseconds"),
        (lambda e: e.update(is_bot="no"), "is_bot must be an integer"),
        (lambda e: e.update(visitor_hash=-5), "visitor_hash out of range"),
    ],
)
def test_dead_letters_one_bad_event_inside_a_record_and_keeps_its_neighbours(mutate: Any, reason: str) -> None:
    bad = _normalised()
    mutate(bad)
    writer, dlq = FakeWriter(), FakeDlq()
    payload = build_event([_record(1, _envelope(_normalised(), bad, _normalised()))], bootstrap_servers="b")
    result = ingest(payload, writer=writer, dlq=dlq, dlq_topic="dlq", now_ms=lambda: 0)
    assert (result["inserted"], result["dead_lettered"]) == (2, 1)
    headers = dict(dlq.sent[0][1][2])
    assert headers["event_index"] == b"1"
    assert reason in headers["reason"].decode()


def test_a_failed_insert_raises_so_the_batch_is_retried() -> None:
    payload = build_event([_record(1, _envelope(_normalised()))], bootstrap_servers="b")
    with pytest.raises(StorageError):
        ingest(payload, writer=FakeWriter(fail=True), dlq=FakeDlq(), dlq_topic="dlq", now_ms=lambda: 0)


def test_dedup_token_is_equal_only_for_the_same_offsets_and_contents() -> None:
    a = decode_records(build_event([_record(1, b"x"), _record(2, b"y")], bootstrap_servers="b"))
    again = decode_records(build_event([_record(1, b"x"), _record(2, b"y")], bootstrap_servers="b"))
    # A recreated topic reuses offsets for new data: that must not look like a redelivery.
    reused = decode_records(build_event([_record(1, b"other"), _record(2, b"values")], bootstrap_servers="b"))
    moved = decode_records(build_event([_record(1, b"x"), _record(3, b"y")], bootstrap_servers="b"))
    assert dedup_token(a) == dedup_token(again)
    assert dedup_token(a) != dedup_token(reused)
    assert dedup_token(a) != dedup_token(moved)


def test_messages_from_before_client_fields_existed_get_defaults() -> None:
    old = {k: v for k, v in _normalised().items() if k not in {"browser", "os", "visitor_hash", "is_bot"}}
    writer = FakeWriter()
    ingest(
        build_event([_record(1, _envelope(old))], bootstrap_servers="b"),
        writer=writer,
        dlq=FakeDlq(),
        dlq_topic="d",
        now_ms=lambda: 0,
    )
    (row,) = writer.events[0][0]
    named = dict(zip(EVENT_COLUMNS, row, strict=True))
    assert (named["browser"], named["os"], named["is_bot"], named["visitor_hash"]) == ("", "", 0, 0)
