"""Kafka as production runs it: three Apache Kafka brokers with MSK's defaults, and brokers dying under load.

The cluster (``trackflow.kafka_cluster``, the session's ``kafka_cluster``)
creates no topic on first use, and gives each topic three copies of which two
must have a write before it is acknowledged. Collect produces with
``acks=all``; the trigger runner consumes as the mapping would.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from chalice.test import Client

import app
from bench.faults import longest_refusal_s
from chalicelib import runtime
from chalicelib.settings import Settings, load_settings
from chalicelib.storage.clickhouse import connect
from chalicelib.storage.migrations import migrate
from tests.conftest import make_env, new_event, wait_for
from trackflow.dev import MIGRATIONS_DIR
from trackflow.kafka_cluster import KafkaCluster
from trackflow.runner import TriggerRunner
from trackflow.topics import describe_topics, ensure_topics

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
ELECTION_BUDGET_S = 20.0  # the controller notices a dead broker in its session timeout (9 s), plus a produce budget


@pytest.fixture
def stack(kafka_cluster: KafkaCluster, data_dir: Path) -> Any:
    """The app and a trigger on the cluster: topics made as `trackflow topics create` makes them."""
    conf = load_settings(make_env(kafka_cluster, data_dir, TRACKFLOW_PRODUCE_TIMEOUT="5"))
    ensure_topics(conf.bootstrap_servers, {conf.events_topic: 3, conf.dlq_topic: 1}, verify=True)
    migrate(connect(conf.clickhouse), MIGRATIONS_DIR, database=conf.clickhouse.database)
    runtime.reset()
    runtime.configure(settings=conf)
    runner = TriggerRunner(
        app.ingest, bootstrap_servers=conf.bootstrap_servers, topic=conf.events_topic, batching_window_s=0.1
    )
    thread = runner.start_thread()
    yield conf, connect(conf.clickhouse, database=conf.clickhouse.database)
    runner.stop()
    thread.join(15)
    runtime.sender().close()
    runtime.reset()
    for index, node in enumerate(kafka_cluster.nodes):  # leave the cluster whole for the next test
        if node.pid is None:
            kafka_cluster.restart(index)


@dataclass
class Load:
    """Collect requests, one event each, sent one after another from a thread, with what each got."""

    answers: list[tuple[float, int, str]] = field(default_factory=list)  # (time, status, error message)
    sent: set[str] = field(default_factory=set)
    accepted: set[str] = field(default_factory=set)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with Client(app.app) as client:
            while not self.stop.is_set():
                event = new_event()
                self.sent.add(event["event_id"])
                body = orjson.dumps({"api_key": "YOUR_API_KEY", "events": [event]})
                answer = client.http.post("/v1/collect", headers={"Content-Type": "text/plain"}, body=body)
                message = (
                    (answer.json_body or {}).get("error", {}).get("message", "") if answer.status_code >= 400 else ""
                )
                self.answers.append((time.monotonic(), answer.status_code, message))
                if answer.status_code == 202:
                    self.accepted.add(event["event_id"])
                time.sleep(0.02)


def _stored(clickhouse: Any) -> tuple[set[str], int]:
    ids = {row[0] for row in clickhouse.query("SELECT toString(event_id) FROM events FINAL").result_rows}
    return ids, int(clickhouse.query("SELECT count() FROM events FINAL").result_rows[0][0])


def test_topics_made_for_the_cluster_have_three_copies_two_in_sync(kafka_cluster: KafkaCluster, tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "CLICKHOUSE_", "TRACKFLOW_"))}
    env |= {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_cluster.bootstrap_servers,
        "TRACKFLOW_DATA_DIR": str(tmp_path),
        "TRACKFLOW_EVENTS_TOPIC": f"ev-{suffix}",
        "TRACKFLOW_DLQ_TOPIC": f"dlq-{suffix}",
        "TRACKFLOW_STAGE": "prod",
        "CLICKHOUSE_URL": "http://127.0.0.1:1",
        "TRACKFLOW_SALT_SECRET": "x" * 20,
    }
    command = [sys.executable, "-m", "trackflow.cli", "topics", "create", "--failure-topic", f"failed-{suffix}"]
    created = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert created.returncode == 0, created.stderr
    for topic in (f"ev-{suffix}", f"dlq-{suffix}", f"failed-{suffix}"):
        assert f"{topic}: created" in created.stdout
    assert created.stdout.count("replication factor 3, min.insync.replicas 2, retention 168 h") == 3
    # A topic somebody made with one copy (as a broker creating topics on first use would) is refused ...
    ensure_topics(kafka_cluster.bootstrap_servers, {f"one-{suffix}": 4}, replication_factor=1)
    env["TRACKFLOW_EVENTS_TOPIC"] = f"one-{suffix}"
    refused = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1 and "replication factor 1, not 3" in refused.stderr
    # ... and doctor warns about it outside dev.
    doctor = subprocess.run(
        [sys.executable, "-m", "trackflow.cli", "doctor"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "one copy loses events with its broker" in doctor.stdout, doctor.stdout


def test_one_broker_of_three_killed_under_load_loses_nothing_and_counts_nothing_twice(
    kafka_cluster: KafkaCluster, stack: tuple[Settings, Any]
) -> None:
    conf, clickhouse = stack
    load = Load()
    sender = threading.Thread(target=load.run, daemon=True)
    sender.start()
    try:
        time.sleep(3)
        killed_at = time.monotonic()
        kafka_cluster.kill(1)  # SIGKILL, as a crash
        wait_for(
            lambda: describe_topics(conf.bootstrap_servers, [conf.events_topic])[conf.events_topic].under_replicated
        )
        time.sleep(8)
        kafka_cluster.restart(1)
        restarted_at = time.monotonic()
        time.sleep(4)
    finally:
        load.stop.set()
        sender.join(30)
    ok_after = [a for a in load.answers if a[0] > restarted_at and a[1] == 202]
    assert ok_after, "collect did not recover after the broker came back"
    refused = longest_refusal_s(load.answers)
    print(
        f"\none broker of three killed: {len(load.answers)} requests, {len(load.accepted)} accepted, "
        f"longest 5xx stretch {refused:.1f} s, broker down {restarted_at - killed_at:.1f} s"
    )
    assert refused <= ELECTION_BUDGET_S, load.answers
    wait_for(lambda: _stored(clickhouse)[0] >= load.accepted, timeout=90, interval=0.5)
    ids, count = _stored(clickhouse)
    # Lost 0: every event answered 202 is stored. An event answered 503 may be stored too (Kafka wrote it
    # after collect gave up waiting); the tracker sends it again with the same id, and it counts once.
    assert load.accepted <= ids <= load.sent
    assert count == len(ids)  # counted twice 0


def test_two_brokers_down_refuse_writes_naming_not_enough_replicas_then_recover(
    kafka_cluster: KafkaCluster, stack: tuple[Settings, Any]
) -> None:
    with Client(app.app) as client:

        def post() -> Any:
            body = orjson.dumps({"api_key": "YOUR_API_KEY", "events": [new_event()]})
            return client.http.post("/v1/collect", headers={"Content-Type": "text/plain"}, body=body)

        assert post().status_code == 202
        kafka_cluster.kill(1)
        kafka_cluster.kill(2)
        answers: list[tuple[float, Any]] = []

        def named() -> bool:
            started = time.monotonic()
            answer = post()
            answers.append((time.monotonic() - started, answer))
            return answer.status_code == 503 and "NOT_ENOUGH_REPLICAS" in answer.json_body["error"]["message"]

        wait_for(named, timeout=60, interval=0.5)
        took, answer = answers[-1]
        assert answer.headers["Retry-After"]
        assert took < 5 + 2.5  # the produce budget, and one metadata request to say why
        health = client.http.get("/health")
        assert health.status_code == 503 and "NOT_ENOUGH_REPLICAS" in health.json_body["broker"]["error"]
        kafka_cluster.restart(2)
        wait_for(lambda: post().status_code == 202, timeout=60, interval=0.5)
