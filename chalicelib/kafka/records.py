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

When a batch still fails after the mapping's retries (or its records are older
than ``MaximumRecordAgeInSeconds``), the mapping hands them to its on-failure
destination as an *invocation record*: ``requestContext`` (why: the
``condition``, how often it was invoked), ``responseContext`` (the function's
error), ``version``, ``timestamp``, ``KafkaBatchInfo`` and, for S3 and Kafka
destinations, the ``payload`` with the records themselves.
:func:`failure_record` writes one (the local trigger, for each failed record,
so one message stays small); :func:`records_of_failure` reads the records back
out of such a document, or takes a message that is itself an original record
(``trackflow replay``).
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


# Why the mapping gave up on records (its requestContext.condition).
RETRIES_EXHAUSTED = "RetryAttemptsExhausted"
RECORD_AGE_EXCEEDED = "RecordAgeExceeded"


def failure_record(
    records: Sequence[dict[str, object]],
    *,
    condition: str,
    invocations: int,
    error: str,
    bootstrap_servers: str,
    function_arn: str,
    request_id: str,
    timestamp: str,
) -> dict[str, object]:
    """The invocation record an on-failure destination receives for ``records`` (made by :func:`encode_record`)."""
    offsets = [int(str(r["offset"])) for r in records]
    stamps = [int(str(r["timestamp"])) for r in records]
    first = records[0]
    return {
        "requestContext": {
            "requestId": request_id,
            "functionArn": function_arn,
            "condition": condition,
            "approximateInvokeCount": invocations,
        },
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
            "errorMessage": error[:1000],
        },
        "version": "1.0",
        "timestamp": timestamp,
        "KafkaBatchInfo": {
            "batchSize": len(records),
            "topic": first["topic"],
            "partition": first["partition"],
            "firstOffset": min(offsets),
            "lastOffset": max(offsets),
            "firstRecordTimestamp": min(stamps),
            "lastRecordTimestamp": max(stamps),
            "bootstrapServers": bootstrap_servers,
        },
        "payload": build_event(records, bootstrap_servers=bootstrap_servers),
    }


def records_of_failure(
    value: bytes | None, *, key: bytes | None = None, fallback: dict[str, object]
) -> dict[str, object]:
    """A mapping payload holding the records of one failure-destination message.

    An invocation record (the mapping's, or the local trigger's) gives its
    ``payload``; any other message is taken as an original record that was
    put there as it was (``fallback`` gives its topic, partition, offset and
    timestamp). Raises RequestError when the document has no records.
    """
    import json

    try:
        document = json.loads(value or b"")
    except ValueError:
        document = None
    if isinstance(document, dict) and "requestContext" in document:
        payload = document.get("payload")
        if not isinstance(payload, dict) or "records" not in payload:
            raise RequestError("the failure record has no payload with records (an SNS/SQS destination keeps none)")
        return payload
    record = encode_record(
        topic=str(fallback["topic"]),
        partition=int(str(fallback["partition"])),
        offset=int(str(fallback["offset"])),
        timestamp=int(str(fallback.get("timestamp") or 0)),
        key=key,
        value=value,
    )
    return build_event([record], bootstrap_servers=str(fallback.get("bootstrapServers", "")))
