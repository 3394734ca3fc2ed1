"""Ingest throughput: trigger runner + ingest handler into chDB, against the engine's own floor.

The topic is filled first (not measured). Then the runner consumes it with
the kafka-python consumer group, builds the AWS payload, invokes the handler
(decode, check, mark the days changed, one insert per batch, commit) until
every record is stored; process CPU per event is the figure.

The floor: exactly the rows the handler built, already in ClickHouse (one
Memory table per batch), inserted with ``INSERT ... SELECT`` into a twin
database made by the same migrations, in the same batches and with the same
insert settings: no Kafka, no decoding, no client. ``ingest_vs_engine_floor``
divides the two.

``ingest_handler_cpu_us_per_event`` is what a Lambda pays when ClickHouse is a
server: the same payloads replayed through the handler with its inserts going
to ``Null``-engine twins of the tables (the client still builds and sends
every block; the engine only parses it), CPU of the calling thread.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from bench.common import CpuTimer, tracker_bodies
from chalicelib import runtime
from chalicelib.ingest import event_row, message_events
from chalicelib.kafka.records import decode_records
from chalicelib.settings import Settings
from chalicelib.storage.clickhouse import EVENT_COLUMNS, connect

logger = logging.getLogger(__name__)


def _fill(settings: Settings, bodies: list[bytes]) -> int:
    """Produce the messages collect would produce for ``bodies``; return the message count."""
    from confluent_kafka import Producer

    from bench.collect import _messages

    producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "linger.ms": 5})
    count = 0
    for body in bodies:
        for key, value, headers in _messages(body):
            while True:
                try:
                    producer.produce(settings.events_topic, value=value, key=key, headers=headers)
                    break
                except BufferError:
                    producer.poll(0.1)
            count += 1
    producer.flush(60)
    return count


class _RecordingWriter:
    """Wraps the real writer and keeps the rows of each insert for the floor."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.batches: list[list[Any]] = []

    def insert_events(self, rows: Any) -> int:
        written: int = self.inner.insert_events(rows)
        self.batches.append(rows)
        return written

    def insert_dead_letters(self, rows: Any) -> None:
        self.inner.insert_dead_letters(rows)


def run(
    settings: Settings, *, requests: int, events_per_request: int, batch_size: int, timeout_s: float = 300
) -> dict[str, float]:
    import app
    from trackflow.runner import TriggerRunner

    messages = _fill(settings, tracker_bodies(requests, events_per_request=events_per_request))
    events = requests * events_per_request
    runtime.reset()
    runtime.configure(settings=settings)
    recording = _RecordingWriter(runtime.writer())
    runtime.configure(writer=recording)

    payloads: list[dict[str, Any]] = []

    def timed_handler(event: dict[str, Any], context: Any) -> Any:
        payloads.append(event)
        return app.ingest(event, context)

    runner = TriggerRunner(
        timed_handler,
        bootstrap_servers=settings.bootstrap_servers,
        topic=settings.events_topic,
        group_id="bench-ingest",
        batch_size=batch_size,
        batching_window_s=0.5,
    )
    deadline = time.monotonic() + timeout_s
    with CpuTimer() as ours:
        while runner.stats.records < messages:
            runner.run_once()
            if time.monotonic() > deadline:
                raise RuntimeError(f"ingest stored {runner.stats.records} of {messages} records in {timeout_s} s")
    runner.stop()
    runner.run()  # closes the consumer
    client = connect(settings.clickhouse, database=settings.clickhouse.database)
    stored = client.query("SELECT count() FROM events").result_rows[0][0]
    if stored != events:
        raise RuntimeError(f"expected {events} rows, found {stored}")
    floor_cpu = _engine_floor(settings, recording.batches)
    handler_us = _handler_alone(settings, payloads, events)
    runtime.reset()
    per_core = ours.sample.per_core(events)
    floor = events / floor_cpu
    return {
        "ingest_batch_records": float(batch_size),
        "ingest_rows_per_insert": events / len(recording.batches),
        "ingest_events_per_s_per_core": per_core,
        "ingest_engine_floor_events_per_s_per_core": floor,
        "ingest_vs_engine_floor": per_core / floor,
        "ingest_handler_cpu_us_per_event": handler_us,
        "ingest_wall_events_per_s": events / ours.sample.wall_s,
        "ingest_decode_check_us_per_event": _decode_only(settings, [r for b in recording.batches for r in b]),
    }


def _engine_floor(settings: Settings, batches: list[list[Any]]) -> float:
    """CPU seconds ClickHouse alone needs for these inserts: INSERT ... SELECT from Memory tables."""
    from chalicelib.storage.clickhouse import INSERT_SETTINGS
    from chalicelib.storage.migrations import migrate
    from trackflow.dev import MIGRATIONS_DIR

    twin = f"{settings.clickhouse.database}_floor"
    migrate(connect(settings.clickhouse), MIGRATIONS_DIR, database=twin)
    client = connect(settings.clickhouse, database=twin)
    for number, batch in enumerate(batches):
        client.command(f"CREATE TABLE staging_{number} AS events ENGINE = Memory")
        client.insert(f"staging_{number}", batch, column_names=EVENT_COLUMNS)
    columns = ", ".join(EVENT_COLUMNS)
    with CpuTimer() as floor:
        for number in range(len(batches)):
            client.command(
                f"INSERT INTO events ({columns}) SELECT {columns} FROM staging_{number}", settings=INSERT_SETTINGS
            )
    client.command(f"DROP DATABASE {twin}")
    return floor.sample.cpu_s


def _handler_alone(settings: Settings, payloads: list[dict[str, Any]], events: int) -> float:
    """Calling-thread CPU µs per event of the ingest use-case with inserts into Null-engine tables."""
    from chalicelib.ingest import ingest
    from chalicelib.storage.clickhouse import EventWriter
    from chalicelib.storage.migrations import migrate
    from trackflow.dev import MIGRATIONS_DIR

    twin = f"{settings.clickhouse.database}_null"
    migrate(connect(settings.clickhouse), MIGRATIONS_DIR, database=twin)
    client = connect(settings.clickhouse, database=twin)
    for table in ("events", "rollup_changes", "dead_letters"):
        client.command(f"CREATE OR REPLACE TABLE {table}_null AS {table} ENGINE = Null")
        client.command(f"EXCHANGE TABLES {table} AND {table}_null")
    writer = EventWriter(client, database=twin)
    started = time.thread_time()
    for payload in payloads:
        ingest(payload, writer=writer, dlq=runtime.sender(), dlq_topic=settings.dlq_topic, now_ms=runtime.now_ms)
    spent = time.thread_time() - started
    client.command(f"DROP DATABASE {twin}")
    return spent / events * 1e6


def _decode_only(settings: Settings, rows: list[Any]) -> float:
    """CPU µs per event for payload decode + row checks alone (no Kafka, no insert), for the note."""
    from chalicelib.collect.enrich import SCHEMA_VERSION
    from chalicelib.kafka.producer import visitor_messages
    from chalicelib.kafka.records import build_event, encode_record

    by_record: dict[tuple[int, int], list[Any]] = {}
    for row in rows[:20000]:
        event = dict(zip(EVENT_COLUMNS[:-3], row[:-3], strict=True))
        event["event_id"] = str(uuid.UUID(int=event["event_id"]))  # rows carry the id as its number
        by_record.setdefault((row[-2], row[-1]), []).append(event)
    payload = build_event(
        [
            encode_record(
                topic="t",
                partition=partition,
                offset=offset,
                timestamp=0,
                key=b"k",
                value=visitor_messages(events, project_id="p", schema_version=SCHEMA_VERSION)[0][1],
            )
            for (partition, offset), events in by_record.items()
        ],
        bootstrap_servers=settings.bootstrap_servers,
    )
    count = 0
    with CpuTimer() as timer:
        for record in decode_records(payload):
            for event in message_events(record):
                event_row(event, record)
                count += 1
    return timer.sample.cpu_s / max(1, count) * 1e6
