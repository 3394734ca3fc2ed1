"""The AWS Lambda Kafka event-source-mapping payload, in both directions.

AWS invokes a Kafka-triggered function with::

    {"eventSource": "aws:kafka" | "SelfManagedKafka",
     "eventSourceArn": "...",            # MSK only
     "bootstrapServers": "b-1:9092,...",
     "records": {"<topic>-<partition>": [
         {"topic": ..., "partition": 0, "offset": 15, "timestamp": 1545084650987,
          "timestampType": "CREATE_TIME", "key": "<base64>", "value": "<base64>",
          "headers": [{"name": [byte, byte, ...]}]}]}}

:func:`decode_records` reads it (for the ingest function); :func:`build_event`
writes it (for the local trigger runner, which plays the mapping's part).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from chalicelib.errors import RequestError

EVENT_SOURCES = ("aws:kafka", "SelfManagedKafka")
# Lambda refuses an invoke request over 6 MB; the mapping closes a batch before it gets there.
LAMBDA_PAYLOAD_LIMIT = 6 * 1024 * 1024
_ENVELOPE_ROOM = 1024  # eventSource, eventSourceArn, bootstrapServers and the JSON around them


@dataclass(frozen=True)
class KafkaRecord:
    """One decoded record. ``value`` is None when its base64 was unreadable."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes] = field(default_factory=dict)
    error: str | None = None


def _b64(data: str | None) -> bytes | None:
    if data is None:
        return None
    return base64.b64decode(data, validate=True)


def _headers(raw: object) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    if not isinstance(raw, list):
        return out
    for item in raw:
        if isinstance(item, dict):
            for name, value in item.items():
                if isinstance(value, list):
                    try:
                        out[name] = bytes(value)
                    except ValueError:  # Java bytes may arrive signed (-128..127)
                        out[name] = bytes(b & 0xFF for b in value)
    return out


def decode_records(event: object) -> list[KafkaRecord]:
    """All records of a mapping payload in partition-then-offset order.

    A payload of the wrong shape raises :class:`RequestError` (the mapping is
    misconfigured; retrying won't help). A record whose key or value is not valid
    base64 is returned with ``error`` set so the caller can dead-letter it.
    """
    if not isinstance(event, dict):
        raise RequestError("Kafka event must be an object")
    source = event.get("eventSource")
    if source not in EVENT_SOURCES:
        raise RequestError(f"eventSource {source!r} is not one of {EVENT_SOURCES}", field="eventSource")
    groups = event.get("records")
    if not isinstance(groups, dict):
        raise RequestError("records must be an object keyed by topic-partition", field="records")
    out: list[KafkaRecord] = []
    for group_key, records in groups.items():
        if not isinstance(records, list):
            raise RequestError(f"records[{group_key!r}] must be a list", field="records")
        for rec in records:
            try:
                topic, partition, offset = rec["topic"], int(rec["partition"]), int(rec["offset"])
            except (KeyError, TypeError, ValueError):
                raise RequestError(f"a record in {group_key!r} lacks topic/partition/offset", field="records") from None
            timestamp = int(rec.get("timestamp") or 0)
            headers = _headers(rec.get("headers"))
            try:
                key, value = _b64(rec.get("key")), _b64(rec.get("value"))
            except (binascii.Error, ValueError, TypeError) as exc:
                out.append(
                    KafkaRecord(topic, partition, offset, timestamp, None, None, headers, f"undecodable base64: {exc}")
                )
                continue
            out.append(KafkaRecord(topic, partition, offset, timestamp, key, value, headers))
    return out


def encode_record(
    *,
    topic: str,
    partition: int,
    offset: int,
    timestamp: int,
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes]] = (),
) -> dict[str, object]:
    """One record as the mapping delivers it."""
    return {
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "timestamp": timestamp,
        "timestampType": "CREATE_TIME",
        "key": None if key is None else base64.b64encode(key).decode(),
        "value": None if value is None else base64.b64encode(value).decode(),
        "headers": [{name: list(data)} for name, data in headers],
    }


def payload_bytes(record: dict[str, object]) -> int:
    """What one encoded record adds to a payload's JSON (its text, a comma, and its partition key's share)."""
    import json

    return len(json.dumps(record, separators=(", ", ": "))) + len(str(record["topic"])) + 16


def split_by_size(
    records: Sequence[dict[str, object]], *, limit: int = LAMBDA_PAYLOAD_LIMIT
) -> list[list[dict[str, object]]]:
    """Records (in order) in runs whose payload stays under ``limit`` bytes, as the mapping batches them.

    A record that cannot fit even alone raises ValueError: the mapping could
    not deliver it either (collect's limits keep every record far below).
    """
    runs: list[list[dict[str, object]]] = []
    size = _ENVELOPE_ROOM
    for record in records:
        cost = payload_bytes(record)
        if cost + _ENVELOPE_ROOM > limit:
            raise ValueError(f"a record of {cost} bytes cannot fit a {limit}-byte invoke payload")
        if not runs or size + cost > limit:
            runs.append([])
            size = _ENVELOPE_ROOM
        runs[-1].append(record)
        size += cost
    return runs


def build_event(
    records: Iterable[dict[str, object]],
    *,
    bootstrap_servers: str,
    event_source: str = "SelfManagedKafka",
    event_source_arn: str | None = None,
) -> dict[str, object]:
    """A full mapping payload from records made by :func:`encode_record`."""
    grouped: dict[str, list[dict[str, object]]] = {}
    for rec in records:
        grouped.setdefault(f"{rec['topic']}-{rec['partition']}", []).append(rec)
    event: dict[str, object] = {"eventSource": event_source, "bootstrapServers": bootstrap_servers, "records": grouped}
    if event_source_arn is not None:
        event["eventSourceArn"] = event_source_arn
    return event
