"""The ingest use-case with fakes for ClickHouse and the DLQ: what is inserted, what is dead-lettered."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import orjson
import pytest

from chalicelib.collect.enrich import enrich
from chalicelib.collect.events import RawEvent
from chalicelib.collect.service import RequestMeta, _client_fields
from chalicelib.errors import RefusedDataError, StorageError
from chalicelib.ingest import ingest
from chalicelib.kafka.records import build_event, encode_record
from chalicelib.projects import dev_project
from chalicelib.storage.clickhouse import EVENT_COLUMNS


class FakeWriter:
    """Stores inserts; ``fail`` raises a transient error, ``refuse`` refuses rows whose title it names."""

    def __init__(self, fail: bool = False, refuse: str | None = None) -> None:
        self.events: list[list[Any]] = []
        self.dead: list[Sequence[Any]] = []
        self.attempts: list[int] = []
        self.fail = fail
        self.refuse = refuse

    def insert_events(self, rows: Sequence[Sequence[Any]]) -> int:
        self.attempts.append(len(rows))
        if self.fail:
            raise StorageError("boom")
        if self.refuse is not None and any(row[EVENT_COLUMNS.index("title")] == self.refuse for row in rows):
            raise RefusedDataError("refused", reason="Code: 131. DB::Exception: Too large string")
        self.events.append(list(rows))
        return len(rows)

    def insert_dead_letters(self, rows: Sequence[Sequence[Any]]) -> None:
        self.dead.extend(rows)


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
    assert [row[-1] for row in writer.events[0]] == [1, 2]  # the first copy (offset 1) is the one kept


def test_schema_2_messages_from_collect_and_schema_1_ones_give_the_same_rows() -> None:
    from chalicelib.kafka.producer import visitor_messages

    events = [_normalised() | {"anonymous_id": "v"} for _ in range(3)]
    (message,) = visitor_messages(events, project_id="p", schema_version=2)
    rows = {}
    for version, value in ((2, message[1]), (1, _envelope(*events))):
        writer = FakeWriter()
        ingest(
            build_event([_record(7, value)], bootstrap_servers="b"),
            writer=writer,
            dlq=FakeDlq(),
            dlq_topic="d",
            now_ms=lambda: 0,
        )
        rows[version] = writer.events[0]
    assert rows[2] == rows[1]
    assert len(rows[2]) == 3


def test_rows_clickhouse_refuses_are_found_by_halving_dead_lettered_and_the_rest_stored() -> None:
    events = [_normalised() for _ in range(8)]
    events[5]["title"] = "refuse me"
    writer, dlq = FakeWriter(refuse="refuse me"), FakeDlq()
    payload = build_event([_record(n, _envelope(e)) for n, e in enumerate(events)], bootstrap_servers="b")
    result = ingest(payload, writer=writer, dlq=dlq, dlq_topic="dlq", now_ms=lambda: 0)
    assert (result["inserted"], result["dead_lettered"]) == (7, 1)
    assert sorted(str(uuid.UUID(int=row[3])) for rows in writer.events for row in rows) == sorted(
        e["event_id"] for n, e in enumerate(events) if n != 5
    )
    # 8 refused; 0-3 stored; 4-7 refused; 4-5 refused; 4 stored; 5 refused; 6-7 stored.
    assert writer.attempts == [8, 4, 4, 2, 1, 1, 2]
    headers = dict(dlq.sent[0][1][2])
    assert headers["source_offset"] == b"5"
    assert "ClickHouse refused it: Code: 131" in headers["reason"].decode()
    assert orjson.loads(dlq.sent[0][1][1])["event_id"] == events[5]["event_id"]


def test_inserts_every_event_of_every_record_in_one_insert_with_provenance() -> None:
    writer, dlq = FakeWriter(), FakeDlq()
    payload = build_event(
        [_record(4, _envelope(_normalised(), _normalised())), _record(9, _envelope(_normalised()), 1)],
        bootstrap_servers="b",
    )
    result = ingest(payload, writer=writer, dlq=dlq, dlq_topic="dlq", now_ms=lambda: 0)
    assert result == {"records": 2, "inserted": 3, "duplicates": 0, "dead_lettered": 0, "erased": 0}
    assert len(writer.events) == 1
    rows = writer.events[0]
    assert all(len(row) == len(EVENT_COLUMNS) for row in rows)
    assert [row[-3:] for row in rows] == [("events", 0, 4), ("events", 0, 4), ("events", 1, 9)]
    assert dlq.sent == []


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"not json", "value is not JSON"),
        (orjson.dumps([1]), "envelope"),
        (orjson.dumps({"v": 99, "events": []}), "unknown schema version 99"),
        (orjson.dumps({"v": 2, "events": [{}]}), 'no "shared" object'),
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
        (lambda e: e.update(is_bot=300), "is_bot must be 0 or 1"),
        (lambda e: e.update(timestamp=e["received_at"] - 32 * 86_400_000), "within 31 days before received_at"),
        (lambda e: e.update(timestamp=e["received_at"] + 1), "within 31 days before received_at"),
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
    (row,) = writer.events[0]
    named = dict(zip(EVENT_COLUMNS, row, strict=True))
    assert (named["browser"], named["os"], named["is_bot"], named["visitor_hash"]) == ("", "", 0, 0)


class ErasedUser:
    """The erased list holding user u-42 and, linked to her, browser b-1 (its events without a user id)."""

    def matcher(self, project_ids: Any) -> Any:
        return lambda project, user, browser: project == "p" and (user == "u-42" or (browser == "b-1" and not user))


def test_events_and_unreadable_records_of_an_erased_person_are_stored_nowhere_and_counted() -> None:
    writer, dlq = FakeWriter(), FakeDlq()
    hers = [_normalised() | {"user_id": "u-42"}, _normalised() | {"anonymous_id": "b-1"}]
    someone_on_her_browser = _normalised() | {"anonymous_id": "b-1", "user_id": "u-7"}
    unreadable_of_hers = orjson.dumps({"v": 99, "shared": {"project_id": "p", "user_id": "u-42"}, "events": [{}]})
    unreadable = orjson.dumps({"v": 99, "shared": {"project_id": "p", "user_id": "u-7"}, "events": [{}]})
    payload = build_event(
        [
            _record(1, _envelope(*hers, someone_on_her_browser, _normalised())),
            _record(2, unreadable_of_hers),
            _record(3, unreadable),
        ],
        bootstrap_servers="b",
    )
    result = ingest(payload, writer=writer, dlq=dlq, dlq_topic="dlq", now_ms=lambda: 0, erased=ErasedUser())
    assert result == {"records": 3, "inserted": 2, "duplicates": 0, "dead_lettered": 1, "erased": 3}
    stored = [
        (row[EVENT_COLUMNS.index("user_id")], row[EVENT_COLUMNS.index("anonymous_id")]) for row in writer.events[0]
    ]
    assert ("u-7", "b-1") in stored
    assert [m[1] for _, m in dlq.sent] == [unreadable]
