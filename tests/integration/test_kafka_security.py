"""Every Kafka client against Apache Kafka's SASL_SSL listener (TLS + SCRAM-SHA-512):
the right credentials carry an event end to end and a poison record to the
dead-letter topic; a wrong password or a plain-text client fails fast, and the
503, /health and the log say why."""

from __future__ import annotations

import json
import logging
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chalice.test import Client
from click.testing import CliRunner

import app
from chalicelib import runtime
from chalicelib.settings import Settings, load_settings
from chalicelib.storage.clickhouse import connect
from tests.conftest import make_env, new_event, wait_for
from tests.integration.tracker_harness import start_stack
from trackflow.cli import main
from trackflow.kafka import ApacheKafka, SecureListener
from trackflow.topics import ensure_topics

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def secure(apache_kafka: ApacheKafka) -> SecureListener:
    assert apache_kafka.secure is not None
    return apache_kafka.secure


def secured_env(kafka: ApacheKafka, secure: SecureListener, data_dir: Path, **override: str) -> dict[str, str]:
    """This test's topics and database, reached through the SASL_SSL listener."""
    return make_env(kafka, data_dir) | secure.env() | override


def post_event(client: Client) -> Any:
    body = {"api_key": "YOUR_API_KEY", "events": [new_event()]}
    return client.http.post("/v1/collect", headers={"Content-Type": "application/json"}, body=json.dumps(body))


@pytest.fixture
def configured() -> Iterator[Any]:
    """Configure the app with settings for one test; reset afterwards."""

    def configure(env: dict[str, str]) -> Settings:
        runtime.reset()
        settings = load_settings(env)
        runtime.configure(settings=settings)
        return settings

    yield configure
    runtime.reset()


@pytest.mark.parametrize("client_library", ["confluent", "kafka-python"])
def test_with_the_right_credentials_an_event_goes_end_to_end_and_a_poison_record_to_the_dead_letter_topic(
    apache_kafka: ApacheKafka, secure: SecureListener, data_dir: Path, client_library: str
) -> None:
    env = secured_env(apache_kafka, secure, data_dir, TRACKFLOW_KAFKA_CLIENT=client_library)
    settings = load_settings(env)
    ensure_topics(
        settings.bootstrap_servers, {settings.events_topic: 2, settings.dlq_topic: 1}, security=settings.kafka_security
    )
    stack = start_stack(settings)
    try:
        event = new_event()
        request = urllib.request.Request(
            f"{stack.api_url}/v1/collect",
            data=json.dumps({"api_key": "YOUR_API_KEY", "events": [event]}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 202
        db = connect(settings.clickhouse, database=settings.clickhouse.database)

        def stored() -> int:
            query = "SELECT count() FROM events WHERE event_id = {e:UUID}"
            return int(db.query(query, parameters={"e": event["event_id"]}).result_rows[0][0])

        assert wait_for(lambda: stored() == 1, timeout=30)

        # A record ingest cannot read: the runner dead-letters it through the secured producer.
        from confluent_kafka import Producer

        poison = Producer({"bootstrap.servers": settings.bootstrap_servers, **settings.kafka_security.confluent()})
        poison.produce(settings.events_topic, value=b"not json", key=b"p")
        assert poison.flush(10) == 0
        assert wait_for(lambda: dead_letters(settings), timeout=30)
    finally:
        stack.stop()

    health = Client(app.app)
    runtime.configure(settings=settings)
    answer = health.http.get("/health").json_body
    assert answer["broker"]["ok"], answer
    assert answer["broker"]["security"] == "SASL_SSL SCRAM-SHA-512 (user trackflow)"


def dead_letters(settings: Settings) -> list[Any]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        settings.dlq_topic,
        bootstrap_servers=settings.bootstrap_servers,
        group_id=f"check-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        consumer_timeout_ms=3000,
        **settings.kafka_security.kafka_python(),
    )
    try:
        return [record for record in consumer if b"not json" in (record.value or b"")]
    finally:
        consumer.close()


def test_doctor_and_topics_create_work_through_the_secured_listener(
    apache_kafka: ApacheKafka, secure: SecureListener, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in secured_env(apache_kafka, secure, data_dir).items():
        monkeypatch.setenv(name, value)
    runner = CliRunner()
    created = runner.invoke(main, ["topics", "create", "--partitions", "2"])
    assert created.exit_code == 0, created.output
    assert "created, 2 partition(s)" in created.output
    doctor = runner.invoke(main, ["doctor"])
    assert "SASL_SSL SCRAM-SHA-512" in doctor.output, doctor.output


@pytest.mark.parametrize(
    ("override", "says"),
    [
        ({"KAFKA_SASL_PASSWORD": "not-the-password"}, "authentication failed"),
        ({"KAFKA_SSL_CA_FILE": "/etc/ssl/certs/ca-certificates.crt"}, "TLS handshake failed"),  # not the broker's CA
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SSL_CA_FILE": ""}, "TLS listener"),
    ],
    ids=["wrong-password", "unknown-ca", "no-tls-on-a-tls-listener"],
)
def test_doctor_names_refused_credentials_and_tls_failures_quietly_within_seconds(
    apache_kafka: ApacheKafka,
    secure: SecureListener,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    override: dict[str, str],
    says: str,
) -> None:
    for name, value in secured_env(apache_kafka, secure, data_dir, **override).items():
        monkeypatch.setenv(name, value)
    started = time.monotonic()
    doctor = CliRunner().invoke(main, ["doctor"])
    took = time.monotonic() - started
    lines = doctor.output.splitlines()
    assert lines[0].startswith("checking Kafka at "), doctor.output
    broker = next(line for line in lines if "broker" in line)
    assert "FAIL" in broker and says in broker, doctor.output
    assert "cannot reach" not in broker
    assert took < 12, took  # two steps of at most a few seconds each
    assert "%3|" not in doctor.output and "ERROR" not in doctor.output  # librdkafka's own lines stay out


@pytest.mark.parametrize(
    ("override", "says"),
    [
        ({"KAFKA_SASL_PASSWORD": "not-the-password"}, "authentication failed"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SSL_CA_FILE": ""}, "TLS listener"),
    ],
    ids=["wrong-password", "no-tls-on-a-tls-listener"],
)
def test_refused_connections_get_a_fast_503_and_health_and_the_log_say_why(
    apache_kafka: ApacheKafka,
    secure: SecureListener,
    data_dir: Path,
    configured: Any,
    caplog: pytest.LogCaptureFixture,
    override: dict[str, str],
    says: str,
) -> None:
    configured(secured_env(apache_kafka, secure, data_dir, TRACKFLOW_PRODUCE_TIMEOUT="2", **override))
    client = Client(app.app)
    with caplog.at_level(logging.ERROR):
        started = time.monotonic()
        answer = post_event(client)
        took = time.monotonic() - started
    assert answer.status_code == 503
    assert answer.headers["Retry-After"]
    assert took < 4  # the produce budget (2 s) and the client's start
    assert says in answer.json_body["error"]["message"]
    assert any(says in record.getMessage() for record in caplog.records)

    started = time.monotonic()
    health = client.http.get("/health").json_body
    assert time.monotonic() - started < 2.5
    assert health["status"] == "degraded"
    assert says in health["broker"]["error"]


def test_credentials_from_a_secrets_manager_secret_reach_the_secured_listener(
    apache_kafka: ApacheKafka,
    secure: SecureListener,
    data_dir: Path,
    configured: Any,
    moto_server: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("chalicelib.secrets._cache", {})  # no credentials cached by another test
    import boto3

    secrets = boto3.client("secretsmanager", region_name="us-east-1")
    arn = secrets.create_secret(
        Name="AmazonMSK_trackflow", SecretString=json.dumps({"username": secure.username, "password": secure.password})
    )["ARN"]
    env = secured_env(apache_kafka, secure, data_dir, KAFKA_SASL_SECRET_ARN=arn, AWS_REGION="us-east-1")
    del env["KAFKA_SASL_USERNAME"], env["KAFKA_SASL_PASSWORD"]
    settings = configured(env)
    ensure_topics(settings.bootstrap_servers, {settings.events_topic: 1}, security=settings.kafka_security)
    answer = post_event(Client(app.app))
    assert answer.status_code == 202, answer.json_body
