"""ClickHouse and the broker down or silent: every route answers in bounded time, never with a 500.

A *silent* server accepts connections and never answers (a hung process, a
black-holed load balancer); a *refusing* one is a port nobody listens on.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from chalice.test import Client

import app
from chalicelib import runtime
from chalicelib.settings import load_settings
from tests.conftest import new_event
from trackflow.broker import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def silent() -> Iterator[str]:
    """host:port of a listener that accepts connections and never sends a byte."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(2)
    for conn in held:
        conn.close()
    server.close()


@pytest.fixture(params=["silent", "refusing"])
def outage(request: pytest.FixtureRequest, silent: str, tmp_path: Path) -> Iterator[str]:
    """The app with ClickHouse and Kafka both at a dead address; yields which kind."""
    down = silent if request.param == "silent" else f"127.0.0.1:{free_port()}"
    runtime.reset()
    runtime.configure(
        settings=load_settings(
            {
                "KAFKA_BOOTSTRAP_SERVERS": down,
                "CLICKHOUSE_URL": f"http://{down}",
                "CLICKHOUSE_CONNECT_TIMEOUT": "1",
                "CLICKHOUSE_QUERY_TIMEOUT": "2",
                "TRACKFLOW_PRODUCE_TIMEOUT": "2",
                "TRACKFLOW_DATA_DIR": str(tmp_path),
                "TRACKFLOW_STAGE": "test",
            }
        )
    )
    yield request.param
    runtime.reset()


def _timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def test_health_answers_within_two_seconds_saying_what_is_down(outage: str) -> None:
    with Client(app.app) as client:
        response, elapsed = _timed(lambda: client.http.get("/health"))
    assert elapsed < 2.5
    assert response.status_code == 503
    body = response.json_body
    assert body["status"] == "degraded"
    assert body["clickhouse"]["ok"] is False
    # The broker check asks for metadata over collect's producer: a server that accepts connections
    # and never answers fails it too, within the budget.
    assert body["broker"]["ok"] is False and body["broker"]["error"]


def test_stats_answer_503_with_retry_after_within_the_query_timeout(outage: str) -> None:
    with Client(app.app) as client:
        response, elapsed = _timed(lambda: client.http.get("/v1/stats/overview?period=7d"))
    assert elapsed < 8
    assert response.status_code == 503, response.body
    assert "Retry-After" in response.headers


def test_collect_answers_503_within_the_produce_timeout(outage: str) -> None:
    body = orjson.dumps({"api_key": "YOUR_API_KEY", "events": [new_event()]})
    with Client(app.app) as client:
        response, elapsed = _timed(
            lambda: client.http.post("/v1/collect", headers={"Content-Type": "text/plain"}, body=body)
        )
    assert elapsed < 8
    assert response.status_code == 503
    runtime.sender().close()


def test_a_silent_secrets_manager_costs_collect_a_bounded_wait_and_a_503(
    silent: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The Kafka credentials are in a secret, and Secrets Manager does not answer.
    for name, value in {
        "AWS_ENDPOINT_URL": f"http://{silent}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("chalicelib.secrets._cache", {})
    runtime.reset()
    runtime.configure(
        settings=load_settings(
            {
                "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
                "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                "KAFKA_SASL_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:AmazonMSK_trackflow",
                "AWS_REGION": "us-east-1",
                "TRACKFLOW_DATA_DIR": str(tmp_path),
                "TRACKFLOW_STAGE": "test",
            }
        )
    )
    body = orjson.dumps({"api_key": "YOUR_API_KEY", "events": [new_event()]})
    try:
        with Client(app.app) as client:
            response, elapsed = _timed(
                lambda: client.http.post("/v1/collect", headers={"Content-Type": "text/plain"}, body=body)
            )
    finally:
        runtime.reset()
    # Two attempts of (1 s to connect + 2 s to read), and the backoff between them.
    assert elapsed < 7.5
    assert response.status_code == 503
    assert "cannot read the Kafka credentials" in response.json_body["error"]["message"]
