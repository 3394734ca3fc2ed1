"""Ingest throughput: trigger runner + ingest handler into chDB, against a bare insert of the same rows.

The topic is filled first (not measured). Then the runner consumes it with
the kafka-python consumer group, builds the AWS payload, invokes the handler
(decode, check, one insert per batch, commit) until every record is stored.
The baseline inserts exactly the rows the handler built, in the same batch
sizes, into a twin table with clickhouse-connect and nothing else.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from bench.common import CpuTimer, tracker_bodies
from chalicelib import runtime
from chalicelib.clickhouse import EVENT_COLUMNS, connect
from chalicelib.ingest import event_row, message_events
from chalicelib.kafka_event import decode_records
from chalicelib.settings import Settings

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
    """Wraps the real writer and keeps the rows of each insert for the baseline."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.batches: list[list[Any]] = []

    def insert_events(self, rows: Any, *, dedup_token: str) -> None:
        self.inner.insert_events(rows, dedup_token=dedup_token)
        self.batches.append(rows)

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
    handler_cpu = [0.0]

    def timed_handler(event: dict[str, Any], context: Any) -> Any:
        # CPU of the handler alone: what the Lambda pays in AWS, where the
        # mapping's managed poller does the consuming.
        with CpuTimer() as timer:
            result = app.ingest(event, context)
        handler_cpu[0] += timer.sample.cpu_s
        return result

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

    # Baseline: the same rows, the same batches, a bare insert into a twin table.
    client.command("CREATE TABLE IF NOT EXISTS events_bare AS events")
    rows = [r for batch in recording.batches for r in batch]
    with CpuTimer() as bare:
        for batch in recording.batches:
            client.insert("events_bare", batch, column_names=EVENT_COLUMNS)
    client.command("DROP TABLE events_bare")
    runtime.reset()

    decode_cost = _decode_only(runner, settings, rows)
    return {
        "ingest_events_per_s_per_core": ours.sample.per_core(events),
        "ingest_handler_only_events_per_s_per_core": events / handler_cpu[0],
        "ingest_wall_events_per_s": events / ours.sample.wall_s,
        "bare_insert_events_per_s_per_core": bare.sample.per_core(len(rows)),
        "ingest_vs_bare_insert": ours.sample.per_core(events) / bare.sample.per_core(len(rows)),
        "ingest_batches": float(runner.stats.batches),
        "ingest_decode_check_us_per_event": decode_cost,
    }


def _decode_only(runner: Any, settings: Settings, rows: list[Any]) -> float:
    """CPU µs per event for payload decode + row checks alone (no Kafka, no insert), for the note."""
    from chalicelib.kafka_event import build_event, encode_record

    sample = rows[:20000]
    import orjson

    by_record: dict[int, list[Any]] = {}
    for row in sample:
        by_record.setdefault(row[-1], []).append(dict(zip(EVENT_COLUMNS[:-3], row[:-3], strict=True)))
    payload = build_event(
        [
            encode_record(
                topic="t", partition=0, offset=o, timestamp=0, key=b"k", value=orjson.dumps({"v": 1, "events": evs})
            )
            for o, evs in by_record.items()
        ],
        bootstrap_servers=settings.bootstrap_servers,
    )
    with CpuTimer() as timer:
        for record in decode_records(payload):
            for event in message_events(record):
                event_row(event, record)
    return timer.sample.cpu_s / max(1, len(sample)) * 1e6
