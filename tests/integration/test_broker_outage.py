"""Collect while Kafka is down: a prompt 503 with Retry-After, and recovery once it is back."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from chalice.test import Client

import app
from chalicelib import runtime
from chalicelib.settings import load_settings
from tests.conftest import make_env, new_event
from trackflow.broker import EmbeddedBroker, free_port
from trackflow.kafka import ApacheKafka
from trackflow.topics import ensure_topics

pytestmark = pytest.mark.integration


def _collect(client: Client) -> Any:
    body = orjson.dumps({"api_key": "YOUR_API_KEY", "events": [new_event()]})
    return client.http.post("/v1/collect", headers={"Content-Type": "text/plain"}, body=body)


def test_unreachable_broker_answers_503_with_retry_after_promptly(tmp_path: Path) -> None:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "TRACKFLOW_DATA_DIR": str(tmp_path),
        "TRACKFLOW_PRODUCE_TIMEOUT": "2",
    }
    runtime.reset()
    runtime.configure(settings=load_settings(env))
    try:
        with Client(app.app) as client:
            started = time.monotonic()
            response = _collect(client)
            elapsed = time.monotonic() - started
    finally:
        runtime.reset()
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.json_body["error"]["code"] == "produce_failed"
    assert elapsed < 10  # bounded by the produce timeout, never a hang


@pytest.mark.parametrize("kafka_client", ["confluent", "kafka-python"])
def test_collect_recovers_after_the_broker_restarts(
    restartable_broker: EmbeddedBroker | ApacheKafka, data_dir: Path, kafka_client: str
) -> None:
    own_broker = restartable_broker
    conf = load_settings(
        make_env(own_broker, data_dir, TRACKFLOW_PRODUCE_TIMEOUT="2", TRACKFLOW_KAFKA_CLIENT=kafka_client)
    )
    ensure_topics(conf.bootstrap_servers, {conf.events_topic: 1})
    runtime.reset()
    runtime.configure(settings=conf)
    try:
        with Client(app.app) as client:
            assert _collect(client).status_code == 202
            own_broker.stop(kill=True)  # a crash (the embedded broker loses everything with it)
            down = _collect(client)
            assert down.status_code == 503
            assert "Retry-After" in down.headers
            own_broker.start()
            ensure_topics(conf.bootstrap_servers, {conf.events_topic: 1})
            # kafka-python's idempotent producer can't survive this restart; the sender
            # replaced its client after the failure, so a next request goes through.
            statuses = []
            for _ in range(5):
                statuses.append(_collect(client).status_code)
                if statuses[-1] == 202:
                    break
            assert statuses[-1] == 202, statuses
    finally:
        runtime.sender().close()
        runtime.reset()


def test_the_trigger_runner_survives_a_broker_restart(
    restartable_broker: EmbeddedBroker | ApacheKafka, data_dir: Path
) -> None:
    own_broker = restartable_broker
    from chalicelib.storage.clickhouse import connect
    from chalicelib.storage.migrations import migrate
    from tests.conftest import wait_for
    from trackflow.dev import MIGRATIONS_DIR
    from trackflow.runner import TriggerRunner

    conf = load_settings(make_env(own_broker, data_dir, TRACKFLOW_PRODUCE_TIMEOUT="2"))
    topics = {conf.events_topic: 1, conf.dlq_topic: 1}
    ensure_topics(conf.bootstrap_servers, topics)
    migrate(connect(conf.clickhouse), MIGRATIONS_DIR, database=conf.clickhouse.database)
    clickhouse = connect(conf.clickhouse, database=conf.clickhouse.database)
    runtime.reset()
    runtime.configure(settings=conf)
    runner = TriggerRunner(
        app.ingest,
        bootstrap_servers=conf.bootstrap_servers,
        topic=conf.events_topic,
        batching_window_s=0.05,
        on_consumer_error=lambda: ensure_topics(conf.bootstrap_servers, topics),
    )
    thread = runner.start_thread()

    def stored() -> int:
        return int(clickhouse.query("SELECT count() FROM events FINAL").result_rows[0][0])

    try:
        with Client(app.app) as client:
            assert _collect(client).status_code == 202
            wait_for(lambda: stored() == 1, timeout=30)
            own_broker.stop(kill=True)
            time.sleep(1)
            own_broker.start()
            ensure_topics(conf.bootstrap_servers, topics)

            def accepted() -> bool:
                return bool(_collect(client).status_code == 202)

            wait_for(accepted, timeout=30, interval=0.5)
            # On the embedded broker the new event reuses offset 0 of the recreated
            # topic: it must not be mistaken for a redelivery of the first one.
            wait_for(lambda: stored() == 2, timeout=60)
    finally:
        runner.stop()
        thread.join(15)
        runtime.sender().close()
        runtime.reset()
    assert not thread.is_alive()
