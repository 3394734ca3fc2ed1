"""GET /metrics (Prometheus text) and GET /health, on the real broker and chDB."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

import orjson
import pytest
from chalice.test import Client
from prometheus_client.parser import text_string_to_metric_families

import app
from chalicelib import runtime
from chalicelib.settings import Settings
from tests.conftest import new_event, wait_for
from trackflow.broker import free_port
from trackflow.runner import TriggerRunner

pytestmark = pytest.mark.integration


def scrape(client: Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_counters_move_when_events_flow(pipeline: Settings, clickhouse: Any) -> None:
    good = [new_event(), new_event()]
    bad = {"type": "pageView"}  # no event_id
    with Client(app.app) as client:
        before = scrape(client)
        response = client.http.post(
            "/v1/collect",
            headers={"Content-Type": "text/plain", "User-Agent": "pytest-agent"},
            body=orjson.dumps({"api_key": "YOUR_API_KEY", "events": [*good, bad]}),
        )
        assert response.status_code == 202
        assert client.http.post("/v1/collect", headers={"Content-Type": "text/plain"}, body=b"{").status_code == 400
        runner = TriggerRunner(
            app.ingest,
            bootstrap_servers=pipeline.bootstrap_servers,
            topic=pipeline.events_topic,
            group_id=f"g-{uuid.uuid4().hex[:8]}",
            batching_window_s=0.05,
        )
        wait_for(lambda: runner.run_once() or clickhouse.query("SELECT count() FROM events").result_rows[0][0] >= 2)
        runner.run_once()
        runner.close()
        after = scrape(client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("trackflow_events_accepted_total") == 2
    assert moved("trackflow_events_rejected_total", reason="event_id") == 1
    assert moved("trackflow_events_rejected_total", reason="invalid_json") == 1
    assert moved("trackflow_http_requests_total", route="/v1/collect", status="202") == 1
    assert moved("trackflow_http_requests_total", route="/v1/collect", status="400") == 1
    assert moved("trackflow_produce_seconds_count") == 1
    assert moved("trackflow_rows_written_total") == 2
    assert moved("trackflow_ingest_seconds_count") >= 1
    assert moved("trackflow_ingest_batch_events_sum") == 2
    lags = [
        v
        for (name, labels), v in after.items()
        if name == "trackflow_consumer_lag" and ("topic", pipeline.events_topic) in labels
    ]
    assert lags and all(lag == 0 for lag in lags)


def test_health_reports_broker_and_clickhouse(pipeline: Settings, clickhouse: Any) -> None:
    with Client(app.app) as client:
        body = client.http.get("/health").json_body
    assert body["status"] == "ok"
    assert body["broker"]["ok"] and body["clickhouse"]["ok"]


def test_health_is_503_naming_the_broker_when_it_is_unreachable(pipeline: Settings, clickhouse: Any) -> None:
    runtime.configure(settings=replace(pipeline, kafka_bootstrap_servers=f"127.0.0.1:{free_port()}"))
    with Client(app.app) as client:
        response = client.http.get("/health")
    assert response.status_code == 503
    assert response.json_body["status"] == "degraded"
    assert response.json_body["broker"]["ok"] is False and "127.0.0.1" in response.json_body["broker"]["error"]
    assert response.json_body["clickhouse"]["ok"] is True


def test_stats_answer_503_when_clickhouse_is_unreachable(pipeline: Settings, clickhouse: Any) -> None:
    from chalicelib.settings import load_settings

    down = load_settings(
        {"TRACKFLOW_DATA_DIR": str(pipeline.data_dir), "CLICKHOUSE_URL": f"http://127.0.0.1:{free_port()}"}
    )
    runtime.reset()
    runtime.configure(settings=replace(pipeline, clickhouse=down.clickhouse))
    with Client(app.app) as client:
        stats = client.http.get("/v1/stats/overview")
        health = client.http.get("/health")
    assert stats.status_code == 503 and stats.json_body["error"]["code"] == "unavailable"
    assert stats.headers["Retry-After"]
    assert health.status_code == 503 and health.json_body["clickhouse"]["ok"] is False
