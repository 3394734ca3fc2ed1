"""``trackflow replay``: bring back what the Kafka mapping handed to its on-failure destination.

After an outage longer than the mapping's retries (ClickHouse down, say), the
failed batches sit on the failure topic (``kafka://trackflow.events.failed``)
or in an S3 bucket, as AWS's invocation records. Replay reads them, takes the
records out (:func:`chalicelib.kafka.records.records_of_failure`; a message that
is an original record is taken as it is) and gives them to the same ingest
use-case the function runs, a batch at a time. Events stored already, by an
earlier replay or before the failure, count once (the events table collapses
repeated event ids), so a second run is harmless.

Its position is committed after every batch: the failure topic's as the
consumer group ``trackflow-replay``, the S3 prefix's as the last key done in
``<data dir>/replay-<bucket>.json``. An interrupted replay resumes there.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chalicelib.errors import RequestError
from chalicelib.kafka.records import build_event, decode_records, encode_record, records_of_failure
from chalicelib.kafka.security import KafkaSecurity

logger = logging.getLogger(__name__)

DEFAULT_GROUP = "trackflow-replay"
BATCH = 500
IDLE_S = 5.0  # no new message for this long: the topic has been read to its end
JOIN_S = 30.0  # the longest a join of the consumer group may take before the idle clock starts

Ingest = Callable[[dict[str, Any]], dict[str, int]]
Progress = Callable[["ReplayStats"], None]


@dataclass
class ReplayStats:
    """What a replay did, for the progress line and the summary."""

    messages: int = 0
    records: int = 0
    inserted: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    unreadable: list[str] = field(default_factory=list)

    def add(self, result: dict[str, int]) -> None:
        self.records += result.get("records", 0)
        self.inserted += result.get("inserted", 0)
        self.duplicates += result.get("duplicates", 0)
        self.dead_lettered += result.get("dead_lettered", 0)

    def line(self) -> str:
        return (
            f"{self.messages:,} failure message(s), {self.records:,} record(s): {self.inserted:,} event(s) written, "
            f"{self.duplicates:,} repeated within a batch, {self.dead_lettered:,} dead-lettered"
            + (f", {len(self.unreadable)} unreadable" if self.unreadable else "")
        )


def _payload_of(value: bytes | None, *, key: bytes | None, where: dict[str, object]) -> list[dict[str, object]]:
    """The records one failure message holds, encoded as the mapping delivers them."""
    payload = records_of_failure(value, key=key, fallback=where)
    return [
        encode_record(
            topic=r.topic,
            partition=r.partition,
            offset=r.offset,
            timestamp=r.timestamp,
            key=r.key,
            value=r.value,
            headers=list(r.headers.items()),
        )
        for r in decode_records(payload)
    ]


def replay_topic(
    bootstrap_servers: str,
    topic: str,
    *,
    ingest: Ingest,
    group: str = DEFAULT_GROUP,
    security: KafkaSecurity | None = None,
    progress: Progress = lambda _: None,
    idle_s: float = IDLE_S,
) -> ReplayStats:
    """Replay every message of ``topic`` not yet committed by ``group``; commit after each batch."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap_servers.split(","),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=2000,
        max_poll_records=BATCH,
        **(security or KafkaSecurity()).kafka_python(),
    )
    stats = ReplayStats()
    try:
        consumer.subscribe([topic])
        joining_until = time.monotonic() + JOIN_S
        last_message = time.monotonic()
        while True:
            polled = consumer.poll(timeout_ms=1000, max_records=BATCH)
            messages = [m for batch in polled.values() for m in batch]
            if not messages:
                if not consumer.assignment() and time.monotonic() < joining_until:
                    last_message = time.monotonic()  # still joining the group: the idle clock waits
                elif time.monotonic() - last_message >= idle_s:
                    break
                continue
            last_message = time.monotonic()
            records: list[dict[str, object]] = []
            for message in messages:
                where = {
                    "topic": message.topic,
                    "partition": message.partition,
                    "offset": message.offset,
                    "timestamp": message.timestamp,
                    "bootstrapServers": bootstrap_servers,
                }
                try:
                    records.extend(_payload_of(message.value, key=message.key, where=where))
                except RequestError as exc:
                    stats.unreadable.append(f"{message.topic}-{message.partition}@{message.offset}: {exc.message}")
            if records:
                stats.add(ingest(build_event(records, bootstrap_servers=bootstrap_servers)))
            stats.messages += len(messages)
            ends: dict[Any, int] = {}
            for message in messages:
                ends[TopicPartition(message.topic, message.partition)] = message.offset + 1
            consumer.commit({tp: OffsetAndMetadata(offset, "", -1) for tp, offset in ends.items()})
            progress(stats)
    finally:
        consumer.close(autocommit=False)
    return stats


def _s3_keys(s3: Any, bucket: str, prefix: str, after: str | None) -> Iterator[str]:
    paginator = s3.get_paginator("list_objects_v2")
    options = {"Bucket": bucket, "Prefix": prefix} | ({"StartAfter": after} if after else {})
    for page in paginator.paginate(**options):
        for item in page.get("Contents", []):
            yield item["Key"]


def replay_s3(
    s3: Any,
    bucket: str,
    prefix: str,
    *,
    ingest: Ingest,
    state: Path,
    progress: Progress = lambda _: None,
) -> ReplayStats:
    """Replay every object under ``s3://bucket/prefix`` after the last one done (kept in ``state``)."""
    done = json.loads(state.read_text()) if state.exists() else {}
    marker = done.get(prefix)
    stats = ReplayStats()
    for key in _s3_keys(s3, bucket, prefix, marker):
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        where = {"topic": f"s3://{bucket}", "partition": 0, "offset": stats.messages, "timestamp": 0}
        try:
            records = _payload_of(body, key=None, where=where)
        except RequestError as exc:
            stats.unreadable.append(f"s3://{bucket}/{key}: {exc.message}")
            records = []
        if records:
            stats.add(ingest(build_event(records, bootstrap_servers="")))
        stats.messages += 1
        done[prefix] = key
        state.parent.mkdir(parents=True, exist_ok=True)
        state.write_text(json.dumps(done))
        progress(stats)
    return stats
