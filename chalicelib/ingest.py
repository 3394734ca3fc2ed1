"""The ingest use-case: a Kafka mapping payload in, one ClickHouse insert out.

Every record is decoded and every event in it checked before anything is
written (types, ranges, a timestamp within ``MAX_EVENT_AGE_DAYS`` of when
collect received it), so one bad value does not make ClickHouse refuse the
whole insert. What cannot be stored goes to the dead-letter topic (with the
reason and the source topic/partition/offset in its headers) and to the
``dead_letters`` table; the rest is written with one insert.

Failures: when ClickHouse refuses data anyway (:class:`RefusedDataError`),
the batch is split in halves until the refused events are found; they are
dead-lettered with ClickHouse's message and the rest is stored, so the
partition moves on. Any other failure raises, so the trigger retries the
batch without committing.

Redelivery (the same records again, in any batches) is harmless: the events
table is a ReplacingMergeTree on the event id read with ``FINAL``, and the
rollups are rebuilt from ``events FINAL`` (:mod:`chalicelib.rollups.compaction`), so a
half-written or repeated insert is never counted twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Protocol, cast

import orjson

from chalicelib.collect.enrich import MAX_EVENT_AGE_MS, SCHEMA_VERSION
from chalicelib.collect.events import UUID_PATTERN
from chalicelib.errors import RefusedDataError
from chalicelib.kafka.producer import Message
from chalicelib.kafka.records import KafkaRecord, decode_records
from chalicelib.storage.clickhouse import CLIENT_DEFAULTS, EVENT_FIELDS

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
_RECEIVED_AT_INDEX = EVENT_FIELDS.index("received_at")
_VISITOR_HASH_INDEX = _ALL_FIELDS.index("visitor_hash")
_IS_BOT_INDEX = _ALL_FIELDS.index("is_bot")
_CLIENT_TS_INDEX = EVENT_FIELDS.index("client_ts")
_PROJECT_INDEX = EVENT_FIELDS.index("project_id")
_USER_ID_INDEX = EVENT_FIELDS.index("user_id")
_ANONYMOUS_ID_INDEX = EVENT_FIELDS.index("anonymous_id")
_fields = itemgetter(*EVENT_FIELDS)
_all_fields = itemgetter(*_ALL_FIELDS)
_is_uuid = UUID_PATTERN.fullmatch
_MAX_MS = 4_102_444_800_000


class Writer(Protocol):
    def insert_events(self, rows: Sequence[Sequence[Any]]) -> int: ...

    def insert_dead_letters(self, rows: Sequence[Sequence[Any]]) -> None: ...


class DeadLetterSender(Protocol):
    def send(self, topic: str, messages: Sequence[Message]) -> None: ...


class Erased(Protocol):
    def matcher(self, project_ids: Iterable[str]) -> Callable[[str, str, str], bool]: ...


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

    This runs for every event, so the common case is a few C-level operations
    and one combined range test; :func:`_why_not` only runs to name what is wrong.
    """
    try:
        row: tuple[Any, ...] = _all_fields(cast(dict[str, Any], event))
    except (KeyError, TypeError):
        row = _with_defaults(event)
    if tuple(map(type, row)) != _TYPES:
        raise PoisonError(_why_not(row))
    timestamp, received_at, event_id = row[_TIMESTAMP_INDEX], row[_RECEIVED_AT_INDEX], row[_EVENT_ID_INDEX]
    if not (
        0 <= received_at - timestamp <= MAX_EVENT_AGE_MS
        and timestamp >= 0
        and received_at <= _MAX_MS
        and 0 <= row[_CLIENT_TS_INDEX] <= _MAX_MS
        and 0 <= row[_VISITOR_HASH_INDEX] <= _MAX_HASH
        and row[_IS_BOT_INDEX] in (0, 1)
        and _is_uuid(event_id)
    ):
        raise PoisonError(_why_not(row))
    # The id as its 128-bit number (what clickhouse-connect turns text into anyway): hashed and compared in C.
    return (
        *row[:_EVENT_ID_INDEX],
        int(event_id.replace("-", ""), 16),
        *row[_EVENT_ID_INDEX + 1 :],
        record.topic,
        record.partition,
        record.offset,
    )


def _with_defaults(event: object) -> tuple[Any, ...]:
    """The row of an event that lacks fields: client facts default (messages from before
    collect derived them); anything else missing is poison."""
    if not isinstance(event, dict):
        raise PoisonError("event is not an object")
    try:
        row: tuple[Any, ...] = _fields(event)
    except KeyError as exc:
        raise PoisonError(f"missing field {exc.args[0]}") from None
    return row + tuple(event.get(name, default) for name, default in CLIENT_DEFAULTS)


def _why_not(row: tuple[Any, ...]) -> str:
    """Why a row can't be stored, naming the first field at fault."""
    for name, value, expected in zip(_ALL_FIELDS, row, _TYPES, strict=True):
        if type(value) is not expected:
            kind = "a string" if expected is str else "epoch milliseconds" if name in _INT_FIELDS else "an integer"
            return f"field {name} must be {kind}"
    for i in _INT_INDEXES:
        if not 0 <= row[i] <= _MAX_MS:
            return f"field {EVENT_FIELDS[i]} must be epoch milliseconds"
    if not 0 <= row[_VISITOR_HASH_INDEX] <= _MAX_HASH:
        return "field visitor_hash out of range"
    if row[_IS_BOT_INDEX] not in (0, 1):
        return "field is_bot must be 0 or 1"
    if not 0 <= row[_RECEIVED_AT_INDEX] - row[_TIMESTAMP_INDEX] <= MAX_EVENT_AGE_MS:
        return "field timestamp must lie within 31 days before received_at"
    return "field event_id is not a UUID"


def message_events(record: KafkaRecord) -> list[Any]:
    """The events carried by one record's value; PoisonError when it is unreadable.

    Reads schema 2 (``shared`` fields once, each event's own fields in ``events``)
    and schema 1 (every field in every event), which older builds produced.
    """
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
    version = doc.get("v")
    events: list[Any] = doc["events"]
    if version == SCHEMA_VERSION:
        shared = doc.get("shared")
        if not isinstance(shared, dict):
            raise PoisonError('value has no "shared" object (schema 2)')
        return [shared | event if isinstance(event, dict) else event for event in events]
    if version == 1:
        return events
    raise PoisonError(f"unknown schema version {version!r} (this build reads 1 and {SCHEMA_VERSION})")


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
    erased: Erased | None = None,
) -> dict[str, int]:
    """Store one mapping payload. Raises (so the batch is retried) if anything can't be written.

    ``erased`` (:class:`chalicelib.ownership.people.ErasedIds`) drops the events of erased people: a record
    redelivered after an erasure stores nothing of theirs again.
    """
    records = decode_records(event)
    rows: list[tuple[Any, ...]] = []
    sources: list[tuple[KafkaRecord, int, Any]] = []  # where each row came from, for dead-lettering
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
            except PoisonError as exc:
                letters.append(DeadLetter(record, f"event {index}: {exc}", index, orjson.dumps(item)))
            else:
                sources.append((record, index, item))
    rows, sources, letters, forgotten = _without_erased(rows, sources, letters, erased)
    unique = _first_of_each(rows)
    stored, refused = _store(writer, unique, list(range(len(unique))))
    for position, reason in refused:
        record, index, item = sources[unique[position][1]]
        letters.append(DeadLetter(record, f"event {index}: ClickHouse refused it: {reason}", index, orjson.dumps(item)))
    if letters:
        logger.warning("dead-lettering %d events or records of %d records", len(letters), len(records))
        dlq.send(dlq_topic, _dead_letter_messages(letters))
        writer.insert_dead_letters(_dead_letter_rows(letters, now_ms()))
    return {
        "records": len(records),
        "inserted": stored,
        "duplicates": len(rows) - len(unique),
        "dead_lettered": len(letters),
        "erased": forgotten,
    }


def _people_in(value: bytes) -> list[tuple[str, str, str]]:
    """(project, user id, anonymous id) of each event a dead letter's value shows, read as far as it goes."""
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return []
    if not isinstance(doc, dict):
        return []
    shared: dict[str, Any] = doc["shared"] if isinstance(doc.get("shared"), dict) else {}
    events: list[Any] = doc["events"] if isinstance(doc.get("events"), list) else [doc]
    found = []
    for event in events:
        merged = shared | event if isinstance(event, dict) else shared
        ids = tuple(merged.get(name) for name in ("project_id", "user_id", "anonymous_id"))
        if isinstance(ids[0], str):
            found.append((ids[0], ids[1] if isinstance(ids[1], str) else "", ids[2] if isinstance(ids[2], str) else ""))
    return found


def _without_erased(
    rows: list[tuple[Any, ...]], sources: list[Any], letters: list[DeadLetter], erased: Erased | None
) -> tuple[list[tuple[Any, ...]], list[Any], list[DeadLetter], int]:
    """The rows (with their sources) and dead letters that hold no erased person, and how many were dropped:
    a redelivered record of an erased person, readable or not, is stored nowhere again."""
    if erased is None or not (rows or letters):
        return rows, sources, letters, 0
    shown = [_people_in(letter.value) for letter in letters]
    matches = erased.matcher({row[_PROJECT_INDEX] for row in rows} | {p[0] for people in shown for p in people})
    keep = [
        n
        for n, row in enumerate(rows)
        if not matches(row[_PROJECT_INDEX], row[_USER_ID_INDEX], row[_ANONYMOUS_ID_INDEX])
    ]
    kept_letters = [
        letter for letter, people in zip(letters, shown, strict=True) if not any(matches(*p) for p in people)
    ]
    dropped = len(rows) - len(keep) + len(letters) - len(kept_letters)
    if not dropped:
        return rows, sources, letters, 0
    logger.info("dropped %d events or records of erased people", dropped)
    return [rows[n] for n in keep], [sources[n] for n in keep], kept_letters, dropped


def _store(
    writer: Writer, unique: list[tuple[tuple[Any, ...], int]], positions: list[int]
) -> tuple[int, list[tuple[int, str]]]:
    """Insert the rows at ``positions`` of ``unique``; when ClickHouse refuses data, halve until the
    refused rows are found. Returns (rows stored, [(position, reason)] refused)."""
    if not positions:
        return 0, []
    try:
        return writer.insert_events([unique[p][0] for p in positions]), []
    except RefusedDataError as exc:
        if len(positions) == 1:
            return 0, [(positions[0], exc.reason)]
        logger.info("ClickHouse refused a block of %d events; splitting it: %s", len(positions), exc.reason)
        middle = len(positions) // 2
        left, left_refused = _store(writer, unique, positions[:middle])
        right, right_refused = _store(writer, unique, positions[middle:])
        return left + right, left_refused + right_refused


def _first_of_each(rows: list[tuple[Any, ...]]) -> list[tuple[tuple[Any, ...], int]]:
    """(row, its index in ``rows``) minus repeats of an event id already in this batch (a tracker resend)."""
    seen: set[tuple[Any, Any]] = set()
    unique = []
    for number, row in enumerate(rows):
        key = (row[0], row[_EVENT_ID_INDEX])
        if key not in seen:
            seen.add(key)
            unique.append((row, number))
    return unique
