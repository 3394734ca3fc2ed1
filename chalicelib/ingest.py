"""The ingest use-case: a Kafka mapping payload in, one ClickHouse insert out.

Every record is decoded and every event in it checked before anything is
written, because one bad value would make ClickHouse refuse the whole insert
and the batch would be retried for ever. What cannot be stored goes to the
dead-letter topic (with the reason and the source topic/partition/offset in
its headers) and to the ``dead_letters`` table; the rest is written with one
insert. A failed insert raises, so the trigger retries the batch without
committing; the insert's deduplication token (derived from the offsets) and
the ReplacingMergeTree on event_id make that retry harmless.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Protocol

import orjson

from chalicelib.clickhouse import CLIENT_DEFAULTS, EVENT_FIELDS
from chalicelib.enrich import SCHEMA_VERSION
from chalicelib.events import UUID_PATTERN
from chalicelib.kafka_event import KafkaRecord, decode_records
from chalicelib.producer import Message

logger = logging.getLogger(__name__)

_INT_FIELDS = frozenset({"timestamp", "client_ts", "received_at"})
_INT_INDEXES = tuple(i for i, name in enumerate(EVENT_FIELDS) if name in _INT_FIELDS)
# The type of every field, in order: one tuple comparison checks them all.
_ALL_FIELDS = EVENT_FIELDS + tuple(name for name, _ in CLIENT_DEFAULTS)
_TYPES = tuple(int if name in _INT_FIELDS else str for name in EVENT_FIELDS) + tuple(
    type(default) for _, default in CLIENT_DEFAULTS
)
_MAX_HASH = 2**64 - 1
_EVENT_ID_INDEX = EVENT_FIELDS.index("event_id")
_TIMESTAMP_INDEX = EVENT_FIELDS.index("timestamp")
_TYPE_INDEX = EVENT_FIELDS.index("type")
_VISITOR_HASH_INDEX = _ALL_FIELDS.index("visitor_hash")
_fields = itemgetter(*EVENT_FIELDS)
_MAX_MS = 4_102_444_800_000


class Writer(Protocol):
    def insert_events(self, rows: Sequence[Sequence[Any]], *, dedup_token: str) -> None: ...

    def insert_dead_letters(self, rows: Sequence[Sequence[Any]]) -> None: ...

    def stored_event_ids(self, keys: Sequence[tuple[str, int, str, str]]) -> set[tuple[str, str]]: ...


class DeadLetterSender(Protocol):
    def send(self, topic: str, messages: Sequence[Message]) -> None: ...


@dataclass(frozen=True)
class DeadLetter:
    record: KafkaRecord
    reason: str
    event_index: int
    value: bytes


class PoisonError(ValueError):
    """This record (or one event in it) can never be stored."""


def event_row(event: object, record: KafkaRecord) -> tuple[Any, ...]:
    """The events-table row for one normalised event; PoisonError if it can't be stored.

    This runs for every event, so the common case is a few C-level operations;
    the field-by-field search only runs to name what is wrong.
    """
    if not isinstance(event, dict):
        raise PoisonError("event is not an object")
    try:
        row: tuple[Any, ...] = _fields(event)
    except KeyError as exc:
        raise PoisonError(f"missing field {exc.args[0]}") from None
    row += tuple(event.get(name, default) for name, default in CLIENT_DEFAULTS)
    if tuple(map(type, row)) != _TYPES:
        for name, value, expected in zip(_ALL_FIELDS, row, _TYPES, strict=True):
            if type(value) is not expected:
                kind = "a string" if expected is str else "epoch milliseconds" if name in _INT_FIELDS else "an integer"
                raise PoisonError(f"field {name} must be {kind}")
    for i in _INT_INDEXES:
        if not 0 <= row[i] <= _MAX_MS:
            raise PoisonError(f"field {EVENT_FIELDS[i]} must be epoch milliseconds")
    if not 0 <= row[_VISITOR_HASH_INDEX] <= _MAX_HASH:
        raise PoisonError("field visitor_hash out of range")
    if UUID_PATTERN.fullmatch(row[_EVENT_ID_INDEX]) is None:
        raise PoisonError("field event_id is not a UUID")
    return (*row, record.topic, record.partition, record.offset)


def message_events(record: KafkaRecord) -> list[Any]:
    """The events carried by one record's value; PoisonError when it is unreadable."""
    if record.error is not None:
        raise PoisonError(record.error)
    if record.value is None:
        raise PoisonError("record has no value")
    try:
        doc = orjson.loads(record.value)
    except orjson.JSONDecodeError as exc:
        raise PoisonError(f"value is not JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("events"), list):
        raise PoisonError('value is not a {"v": ..., "events": [...]} envelope')
    if doc.get("v") != SCHEMA_VERSION:
        raise PoisonError(f"unknown schema version {doc.get('v')!r} (this build reads {SCHEMA_VERSION})")
    events: list[Any] = doc["events"]
    return events


def dedup_token(records: Sequence[KafkaRecord]) -> str:
    """Equal only for the same records: same offsets *and* same contents.

    Offsets alone are not enough: a topic that is deleted and recreated (or a
    broker that restarts empty, like the embedded one) hands out offset 0 again
    for new data, and ClickHouse would drop that new batch as a duplicate.
    """
    digest = hashlib.sha256()
    for record in records:
        digest.update(f"{record.topic}\0{record.partition}\0{record.offset}\0{record.timestamp}\0".encode())
        digest.update(record.key or b"")
        digest.update(b"\0")
        digest.update(record.value or b"")
    return digest.hexdigest()


def _dead_letter_messages(letters: Sequence[DeadLetter]) -> list[Message]:
    return [
        (
            letter.record.key,
            letter.value,
            [
                ("reason", letter.reason.encode()),
                ("source_topic", letter.record.topic.encode()),
                ("source_partition", str(letter.record.partition).encode()),
                ("source_offset", str(letter.record.offset).encode()),
                ("event_index", str(letter.event_index).encode()),
            ],
        )
        for letter in letters
    ]


def _dead_letter_rows(letters: Sequence[DeadLetter], now: int) -> list[list[Any]]:
    return [
        [
            now,
            letter.reason,
            letter.record.topic,
            letter.record.partition,
            letter.record.offset,
            letter.event_index,
            (letter.record.key or b"").decode("utf-8", "replace"),
            letter.value.decode("utf-8", "replace"),
        ]
        for letter in letters
    ]


def ingest(
    event: object,
    *,
    writer: Writer,
    dlq: DeadLetterSender,
    dlq_topic: str,
    now_ms: Callable[[], int],
) -> dict[str, int]:
    """Store one mapping payload. Raises (so the batch is retried) if anything can't be written."""
    records = decode_records(event)
    rows: list[tuple[Any, ...]] = []
    resent: list[tuple[Any, ...]] = []
    letters: list[DeadLetter] = []
    for record in records:
        try:
            events = message_events(record)
        except PoisonError as exc:
            letters.append(DeadLetter(record, str(exc), -1, record.value or b""))
            continue
        for index, item in enumerate(events):
            try:
                rows.append(event_row(item, record))
                if item.get("resent"):
                    resent.append(rows[-1])
            except PoisonError as exc:
                letters.append(DeadLetter(record, f"event {index}: {exc}", index, orjson.dumps(item)))
    if letters:
        logger.warning("dead-lettering %d of %d records' events", len(letters), len(records))
        dlq.send(dlq_topic, _dead_letter_messages(letters))
        writer.insert_dead_letters(_dead_letter_rows(letters, now_ms()))
    unique = _first_of_each(rows)
    if resent:
        unique = _not_stored_yet(unique, resent, writer)
    if unique:
        writer.insert_events(unique, dedup_token=dedup_token(records))
    return {
        "records": len(records),
        "inserted": len(unique),
        "duplicates": len(rows) - len(unique),
        "dead_lettered": len(letters),
    }


def _not_stored_yet(
    rows: list[tuple[Any, ...]], resent: list[tuple[Any, ...]], writer: Writer
) -> list[tuple[Any, ...]]:
    """Drop resent events whose first copy is already stored (an earlier batch of this partition).

    Only events the client marked as resent are looked up, by the table's whole
    sort key, so the common case costs nothing and this one a few granules.
    """
    keys = [(r[0], r[_TIMESTAMP_INDEX], r[_TYPE_INDEX], r[_EVENT_ID_INDEX]) for r in resent]
    stored = writer.stored_event_ids(keys)
    if not stored:
        return rows
    logger.info("dropping %d resent events stored before", len(stored))
    return [row for row in rows if (row[0], row[_EVENT_ID_INDEX]) not in stored]


def _first_of_each(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The rows minus repeats of an event id already in this batch (a tracker resend), so rollups count it once."""
    seen: set[tuple[Any, Any]] = set()
    unique = []
    for row in rows:
        key = (row[0], row[_EVENT_ID_INDEX])
        if key not in seen:
            seen.add(key)
            unique.append(row)
    return unique
