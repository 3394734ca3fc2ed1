"""Shared fixtures: a real embedded broker, one chDB engine, per-test topics and databases.

chDB allows one engine directory per process, so the whole session shares one
data directory; each test gets its own database and its own topics instead.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chalicelib import runtime
from chalicelib.settings import Settings, load_settings
from chalicelib.storage.clickhouse import connect
from chalicelib.storage.migrations import migrate
from trackflow.broker import EmbeddedBroker, free_port
from trackflow.dev import MIGRATIONS_DIR
from trackflow.kafka import ApacheKafka, missing_tools
from trackflow.kafka_cluster import KafkaCluster
from trackflow.topics import ensure_topics


def pytest_configure(config: pytest.Config) -> None:
    """Under ``pytest -n`` (make test), resolve Apache Kafka's jars once before the workers start, so two
    workers starting a broker at the same moment don't both fill the empty Maven repository of a new machine."""
    workers = getattr(config.option, "numprocesses", None)
    if workers and not hasattr(config, "workerinput") and not missing_tools():
        import tempfile

        with tempfile.TemporaryDirectory() as home:
            ApacheKafka(Path(home)).jars()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """One node id per API operation of a schemathesis test (test_openapi).

    schemathesis 4.32 names each operation's item ``test[GET /path]``, but pytest 9 builds a node id
    from the function's name and its ``parametrize`` ids only, so every operation of a schema got the
    same id. One process runs them all anyway; pytest-xdist hands items to workers by id, so there
    only the first operation of each schema ran (1 of 19 and 1 of 11, counted under ``-n 2``). The operation
    goes into the id, as its name has it.
    """
    for item in items:
        label = getattr(item, "operation_label", None)
        if label and not item.nodeid.endswith("]"):
            item._id = item._id.with_params(label)


@pytest.fixture(scope="session")
def embedded_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    log = tmp_path_factory.mktemp("broker") / "broker.log"
    running = EmbeddedBroker(port=free_port(), log_path=log).start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def broker(embedded_broker: EmbeddedBroker) -> EmbeddedBroker:
    """The broker tests use unless their module asks for both (see ``both_brokers``)."""
    return embedded_broker


@pytest.fixture(scope="session")
def apache_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApacheKafka]:
    """One Apache Kafka for the session (tests keep apart by topic names), when java and mvn are here.

    Skipped with what to install where they are not; under CI (``CI`` set, or
    TRACKFLOW_REQUIRE_APACHE_KAFKA=1, which `.ci/run` sets) that skip is a
    failure, and so it is for the three-broker cluster built on its jars.
    """
    missing = missing_tools()
    if missing:
        message = "the Apache Kafka cases need " + " and ".join(missing)
        if os.environ.get("TRACKFLOW_REQUIRE_APACHE_KAFKA") or os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    home = tmp_path_factory.mktemp("apache-kafka")
    # With its SASL_SSL listener too (throwaway CA, SCRAM user): the secured-client tests use it.
    running = ApacheKafka(home, port=free_port(), controller_port=free_port(), sasl_port=free_port()).start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def kafka_cluster(apache_kafka: ApacheKafka, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """Three Apache Kafka brokers and a controller with MSK's defaults, for the session (the session's jars).

    Tests that kill a broker start it again before they end.
    """
    home = tmp_path_factory.mktemp("kafka-cluster")
    (home / "lib").symlink_to(apache_kafka.lib)
    base = free_port()
    while not all(_free(base + offset) for offset in range(6)):
        base = free_port()
    running = KafkaCluster(home, brokers=3, port=base).start()
    yield running
    running.stop()


def _free(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def both_brokers(request: pytest.FixtureRequest) -> Any:
    """Body of a module's ``broker`` fixture parametrised over ``["embedded", "apache"]``."""
    return request.getfixturevalue("embedded_broker" if request.param == "embedded" else "apache_kafka")


@pytest.fixture
def own_apache_kafka(apache_kafka: ApacheKafka, tmp_path: Path) -> Iterator[ApacheKafka]:
    """An Apache Kafka for one test, to kill and start again (with the session's jars, already resolved)."""
    home = tmp_path / "kafka"
    home.mkdir()
    (home / "lib").symlink_to(apache_kafka.home / "lib")
    running = ApacheKafka(home, port=free_port(), controller_port=free_port()).start()
    yield running
    running.stop()


@pytest.fixture(params=["embedded", "apache"])
def restartable_broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EmbeddedBroker | ApacheKafka]:
    """A broker of each kind for one test, to kill and start again: the embedded one loses
    everything when it stops; Apache Kafka keeps its topics, messages and offsets."""
    if request.param == "apache":
        yield request.getfixturevalue("own_apache_kafka")
        return
    running = EmbeddedBroker(port=free_port(), log_path=tmp_path / "broker.log").start()
    yield running
    running.stop()


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """An embedded broker for one test, to stop and restart (it loses everything when it stops)."""
    running = EmbeddedBroker(port=free_port(), log_path=tmp_path / "broker.log").start()
    yield running
    running.stop()


@pytest.fixture
def moto_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A real AWS API emulator (moto's server) for one test; boto3 points at it through the environment."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    for name, value in {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("trackflow-data")


def make_env(broker: EmbeddedBroker | ApacheKafka, data_dir: Path, **extra: str) -> dict[str, str]:
    suffix = uuid.uuid4().hex[:10]
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "TRACKFLOW_DATA_DIR": str(data_dir),
        "CLICKHOUSE_DATABASE": f"test_{suffix}",
        "TRACKFLOW_EVENTS_TOPIC": f"events-{suffix}",
        "TRACKFLOW_DLQ_TOPIC": f"dlq-{suffix}",
        "TRACKFLOW_PRODUCE_TIMEOUT": "5",
        "TRACKFLOW_STAGE": "test",
    }
    env.update(extra)
    return env


@pytest.fixture
def settings(broker: EmbeddedBroker | ApacheKafka, data_dir: Path) -> Settings:
    """Settings for one test: its own topics and database on the shared engines."""
    conf = load_settings(make_env(broker, data_dir))
    ensure_topics(conf.bootstrap_servers, {conf.events_topic: 2, conf.dlq_topic: 1})
    return conf


@pytest.fixture
def clickhouse(settings: Settings) -> Any:
    """A client on the test's freshly migrated database."""
    migrate(connect(settings.clickhouse), MIGRATIONS_DIR, database=settings.clickhouse.database)
    return connect(settings.clickhouse, database=settings.clickhouse.database)


@pytest.fixture
def pipeline(settings: Settings, clickhouse: Any) -> Iterator[Settings]:
    """The app's runtime wired to this test's broker topics and database."""
    runtime.reset()
    runtime.configure(settings=settings)
    yield settings
    runtime.sender().close()
    runtime.reset()


def wait_for(check: Callable[[], Any], *, timeout: float = 30.0, interval: float = 0.1) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (last value {value!r})")
        time.sleep(interval)


def read_records(
    bootstrap_servers: str, topic: str, count: int, *, partitions: Iterable[int] = (0,), timeout: float = 30
) -> list[Any]:
    """The records of ``topic``'s ``partitions`` from their start, once at least ``count`` have been read."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False)
    try:
        assigned = [TopicPartition(topic, partition) for partition in partitions]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        found: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(found) < count and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                found.extend(batch)
        assert len(found) >= count, f"only {len(found)} of {count} records on the broker"
        return found
    finally:
        consumer.close()


def new_event(event_type: str = "pageView", **overrides: Any) -> dict[str, Any]:
    """A valid client event."""
    event: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "type": event_type,
        "ts": int(time.time() * 1000),
        "props": {"title": "Home"},
        "context": {"url": "https://shop.example/home?utm_source=news&utm_medium=email", "anonymous_id": "anon-1"},
    }
    event.update(overrides)
    return event


@pytest.fixture(scope="session")
def lambda_bundle(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """`trackflow package` for x86_64, built once: deployment.zip and sam.json."""
    from trackflow.dev import ROOT
    from trackflow.package import build

    return build(ROOT, tmp_path_factory.mktemp("package") / "out", architecture="x86_64")
