"""`trackflow kafka`: Apache Kafka from Maven Central, durable across restarts, and `trackflow dev --kafka apache`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from tests.conftest import wait_for
from trackflow import kafka as kafka_module
from trackflow.broker import BrokerError, free_port
from trackflow.kafka import ApacheKafka, missing_tools
from trackflow.topics import ensure_topics

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def tools() -> None:
    missing = missing_tools()
    if missing:
        if os.environ.get("TRACKFLOW_REQUIRE_APACHE_KAFKA"):
            pytest.fail("the Apache Kafka cases need " + " and ".join(missing))
        pytest.skip("the Apache Kafka cases need " + " and ".join(missing))


def test_messages_and_committed_offsets_survive_a_restart(tools: None, tmp_path: Path) -> None:
    port, controller = free_port(), free_port()
    with ApacheKafka(tmp_path, port=port, controller_port=controller) as first:
        ensure_topics(first.bootstrap_servers, {"durable": 1})
        producer = KafkaProducer(bootstrap_servers=first.bootstrap_servers)
        for n in range(3):
            producer.send("durable", f"m{n}".encode()).get(10)
        producer.close()
        consumer = KafkaConsumer(
            bootstrap_servers=first.bootstrap_servers,
            group_id="g",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        consumer.subscribe(["durable"])
        wait_for(lambda: consumer.poll(timeout_ms=500), timeout=30)
        consumer.commit({TopicPartition("durable", 0): OffsetAndMetadata(2, "", -1)})
        consumer.close()
    with ApacheKafka(
        tmp_path, port=port, controller_port=controller
    ) as second:  # the same storage, not formatted again
        consumer = KafkaConsumer(
            bootstrap_servers=second.bootstrap_servers,
            group_id="g",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        consumer.subscribe(["durable"])
        records = wait_for(lambda: [r for batch in consumer.poll(timeout_ms=500).values() for r in batch], timeout=30)
        consumer.close()
    assert [r.value for r in records] == [b"m2"]  # resumed after the committed offset


def test_without_java_or_maven_the_error_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kafka_module.shutil, "which", lambda tool: None)
    with pytest.raises(BrokerError, match=r"java.*apt-get install openjdk-17-jre-headless.*mvn"):
        ApacheKafka(tmp_path / "none", port=free_port()).start()


def _port_and_next_free() -> int:
    """A free port whose successor is free too: `dev --kafka apache` puts the KRaft controller there."""
    from trackflow.ports import is_free

    while not is_free("127.0.0.1", (port := free_port()) + 1):
        pass
    return port


def test_dev_with_apache_kafka_stores_an_event(tools: None, tmp_path: Path) -> None:
    api_port, broker_port = free_port(), _port_and_next_free()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "CLICKHOUSE_", "TRACKFLOW_"))}
    env["TRACKFLOW_DATA_DIR"] = str(tmp_path)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trackflow.cli",
            "dev",
            "--kafka",
            "apache",
            "--port",
            str(api_port),
            "--broker-port",
            str(broker_port),
            "--tracker-port",
            str(free_port()),
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(lambda: (tmp_path / "dev.json").exists() or proc.poll() is not None, timeout=180, interval=0.5)
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        event_id = str(uuid.uuid4())
        body = {
            "api_key": "YOUR_API_KEY",
            "events": [
                {
                    "event_id": event_id,
                    "type": "pageView",
                    "ts": time.time_ns() // 1_000_000,
                    "context": {"url": "https://a.example/"},
                }
            ],
        }

        def post() -> int:
            request = urllib.request.Request(
                f"http://127.0.0.1:{api_port}/v1/collect",
                data=json.dumps(body).encode(),
                headers={"Content-Type": "text/plain"},
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return int(response.status == 202)
            except OSError:
                return 0

        wait_for(post, timeout=60, interval=0.5)

        def stored() -> bool:
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "trackflow.cli",
                    "sql",
                    f"SELECT count() AS n FROM events WHERE event_id = '{event_id}'",
                    "--format",
                    "json",
                ],
                env=env,
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=60,
            )
            return result.returncode == 0 and json.loads(result.stdout) == [{"n": 1}]

        wait_for(stored, timeout=60, interval=0.5)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=90)
    assert proc.returncode == 0
    assert (tmp_path / "kafka" / "data" / "meta.properties").exists()  # formatted storage, kept for the next start


def test_consumer_lag_counts_records_that_arrived_since_the_last_fetch(apache_kafka: ApacheKafka) -> None:
    """The lag gauge follows the partition's end offset (as the mapping's OffsetLag), not the last fetch."""
    from chalicelib import metrics
    from trackflow.runner import LAG_CHECK_INTERVAL_S, TriggerRunner

    topic = f"lag-{uuid.uuid4().hex[:8]}"
    ensure_topics(apache_kafka.bootstrap_servers, {topic: 1})
    producer = KafkaProducer(bootstrap_servers=apache_kafka.bootstrap_servers)
    for i in range(10):
        producer.send(topic, value=b'{"v": %d}' % i, partition=0)
    producer.flush(10)
    batches: list[int] = []

    def handler(event: dict[str, object], _context: object) -> None:
        if not batches:  # while the first batch is processed, 20 more arrive
            for _ in range(20):
                producer.send(topic, value=b"{}", partition=0)
            producer.flush(10)
            time.sleep(LAG_CHECK_INTERVAL_S)  # end offsets are asked for at most once a second
        batches.append(sum(len(v) for v in event["records"].values()))  # type: ignore[attr-defined]

    runner = TriggerRunner(
        handler,
        bootstrap_servers=apache_kafka.bootstrap_servers,
        topic=topic,
        group_id=f"g-{topic}",
        batch_size=4,
        batching_window_s=0,
    )
    try:
        deadline = time.monotonic() + 60
        while not batches and time.monotonic() < deadline:
            runner.run_once()
        assert batches == [4]
        body, _ = metrics.exposition()
        line = next(
            row for row in body.decode().splitlines() if row.startswith("trackflow_consumer_lag{") and topic in row
        )
        assert float(line.rsplit(" ", 1)[1]) == 30 - 4  # the last fetch saw only 10
    finally:
        runner.close()
        producer.close()
