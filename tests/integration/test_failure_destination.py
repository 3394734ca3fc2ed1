"""A ClickHouse outage longer than the mapping's retries: records go to the failure destination, replay brings them back.

The trigger runs with the deployed mapping's failure settings (fewer retries
and a short back-off, so the test is quick) against a real broker, while the
ClickHouse it writes to does not answer. The failed records land on the
failure topic (or in an S3 bucket on moto's server) as AWS's invocation
records; once ClickHouse is back, ``trackflow replay`` stores them, exactly
once however often it runs.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest
from chalice.test import Client
from click.testing import CliRunner

import app
from chalicelib import runtime
from chalicelib.ingest import ingest as ingest_batch
from chalicelib.settings import Settings, load_settings
from tests.conftest import new_event, read_records, wait_for
from trackflow.broker import free_port
from trackflow.cli import main
from trackflow.mapping import KafkaDestination, MappingPolicy, S3Destination
from trackflow.replay import replay_s3, replay_topic
from trackflow.runner import TriggerRunner
from trackflow.topics import ensure_topics

pytestmark = [pytest.mark.integration, pytest.mark.slow]

QUICK = {"maximum_retry_attempts": 2, "backoff_s": 0.05, "backoff_max_s": 0.1}


def _down(settings: Settings) -> Settings:
    """The same settings with a ClickHouse that refuses connections."""
    gone = load_settings(
        {
            "TRACKFLOW_DATA_DIR": str(settings.data_dir),
            "CLICKHOUSE_URL": f"http://127.0.0.1:{free_port()}",
            "CLICKHOUSE_CONNECT_TIMEOUT": "1",
        }
    )
    return replace(settings, clickhouse=replace(gone.clickhouse, database=settings.clickhouse.database))


def _send(count: int) -> list[dict[str, Any]]:
    events = [new_event(context={"url": "https://shop.example/p", "anonymous_id": f"v{n}"}) for n in range(count)]
    with Client(app.app) as client:
        for event in events:
            body = orjson.dumps({"api_key": "YOUR_API_KEY", "events": [event]})
            answer = client.http.post("/v1/collect", headers={"Content-Type": "text/plain"}, body=body)
            assert answer.status_code == 202, answer.body
    return events


def _run_until(runner: TriggerRunner, done: Any) -> None:
    thread = runner.start_thread()
    try:
        wait_for(done, timeout=60, interval=0.1)
    finally:
        runner.stop()
        thread.join(15)


def _fail_to_topic(pipeline: Settings, count: int) -> tuple[str, list[dict[str, Any]]]:
    """Send ``count`` events while ClickHouse is down; the trigger gives them up to a failure topic."""
    failed = f"failed-{pipeline.events_topic}"
    ensure_topics(pipeline.bootstrap_servers, {failed: 1})
    runtime.configure(settings=_down(pipeline))  # collect still produces; ingest cannot write
    events = _send(count)
    destination = KafkaDestination(failed, bootstrap_servers=pipeline.bootstrap_servers)
    runner = TriggerRunner(
        app.ingest,
        bootstrap_servers=pipeline.bootstrap_servers,
        topic=pipeline.events_topic,
        group_id=f"g-{failed}",
        batching_window_s=0.2,
        policy=MappingPolicy(on_failure=f"kafka://{failed}", **QUICK),
        destination=destination,
    )
    _run_until(runner, lambda: runner.stats.sent_to_destination >= count)
    destination.close()
    return failed, events


def _stored(clickhouse: Any) -> int:
    return int(clickhouse.query("SELECT count() FROM events FINAL").result_rows[0][0])


def _ingest_into(settings: Settings) -> Any:
    runtime.reset()
    runtime.configure(settings=settings)
    return lambda payload: ingest_batch(
        payload, writer=runtime.writer(), dlq=runtime.sender(), dlq_topic=settings.dlq_topic, now_ms=runtime.now_ms
    )


def test_an_outage_past_the_retries_fills_the_failure_topic_and_replay_stores_each_event_once(
    pipeline: Settings, clickhouse: Any
) -> None:
    failed, events = _fail_to_topic(pipeline, 6)
    assert _stored(clickhouse) == 0

    # What AWS documents for a failed Kafka batch: why, how often, the function's error, and the records.
    messages = read_records(pipeline.bootstrap_servers, failed, 6)
    document = json.loads(messages[0].value)
    assert document["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert document["requestContext"]["approximateInvokeCount"] == 3
    assert document["responseContext"]["functionError"] == "Unhandled"
    assert document["KafkaBatchInfo"]["topic"] == pipeline.events_topic
    (record,) = [r for rs in document["payload"]["records"].values() for r in rs]
    assert record["topic"] == pipeline.events_topic and record["value"]

    # ClickHouse is back: replay, twice, and as another reader: every event stored once.
    ingest = _ingest_into(pipeline)
    first = replay_topic(pipeline.bootstrap_servers, failed, ingest=ingest, group=f"r-{failed}", idle_s=2)
    assert (first.messages, first.records, first.inserted) == (6, 6, 6)
    assert _stored(clickhouse) == 6
    resumed = replay_topic(pipeline.bootstrap_servers, failed, ingest=ingest, group=f"r-{failed}", idle_s=2)
    assert resumed.messages == 0  # the position was committed
    again = replay_topic(pipeline.bootstrap_servers, failed, ingest=ingest, group=f"other-{failed}", idle_s=2)
    assert again.inserted == 6 and _stored(clickhouse) == 6  # written again, counted once
    ids = {row[0] for row in clickhouse.query("SELECT toString(event_id) FROM events FINAL").result_rows}
    assert ids == {e["event_id"] for e in events}


def test_replay_runs_as_a_command_and_says_what_it_did(pipeline: Settings, clickhouse: Any, monkeypatch: Any) -> None:
    failed, _ = _fail_to_topic(pipeline, 2)
    runtime.reset()
    for name, value in {
        "KAFKA_BOOTSTRAP_SERVERS": pipeline.bootstrap_servers,
        "TRACKFLOW_DATA_DIR": str(pipeline.data_dir),
        "CLICKHOUSE_DATABASE": pipeline.clickhouse.database,
        "TRACKFLOW_EVENTS_TOPIC": pipeline.events_topic,
        "TRACKFLOW_DLQ_TOPIC": pipeline.dlq_topic,
        "TRACKFLOW_STAGE": "test",
        "TRACKFLOW_ON_FAILURE_DESTINATION": f"kafka://{failed}",
    }.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(main, ["replay", "--group", f"cli-{failed}"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"replaying {failed}" in result.output
    assert "replayed: 2 failure message(s), 2 record(s): 2 event(s) written" in result.output
    assert _stored(clickhouse) == 2


def test_an_s3_destination_keeps_the_batch_and_replay_resumes_after_the_last_object(
    pipeline: Settings, clickhouse: Any, moto_server: str, tmp_path: Path
) -> None:
    s3 = boto3.client("s3")
    bucket = f"failed-{pipeline.events_topic}".lower()[:60]
    s3.create_bucket(Bucket=bucket)
    runtime.configure(settings=_down(pipeline))
    _send(3)
    runner = TriggerRunner(
        app.ingest,
        bootstrap_servers=pipeline.bootstrap_servers,
        topic=pipeline.events_topic,
        group_id=f"g-{bucket}",
        batching_window_s=0.5,
        policy=MappingPolicy(on_failure=f"arn:aws:s3:::{bucket}", **QUICK),
        destination=S3Destination(bucket, bootstrap_servers=pipeline.bootstrap_servers, mapping_id="local", s3=s3),
    )
    _run_until(runner, lambda: runner.stats.sent_to_destination >= 3)
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys and all(key.startswith(f"aws/lambda/local/{pipeline.events_topic}-") for key in keys)

    ingest = _ingest_into(pipeline)
    state = tmp_path / "replay.json"
    first = replay_s3(s3, bucket, "aws/lambda/", ingest=ingest, state=state)
    assert (first.messages, first.inserted) == (len(keys), 3) and _stored(clickhouse) == 3
    assert replay_s3(s3, bucket, "aws/lambda/", ingest=ingest, state=state).messages == 0  # resumed after the last
