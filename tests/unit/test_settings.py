"""Settings: embedded defaults, real-server settings, and errors that say what to set."""

from __future__ import annotations

from pathlib import Path

import pytest

from chalicelib.errors import ConfigError
from chalicelib.settings import load_settings


def test_no_settings_means_embedded_engines_in_the_data_dir(tmp_path: Path) -> None:
    conf = load_settings({"TRACKFLOW_DATA_DIR": str(tmp_path)})
    assert conf.embedded_kafka
    assert conf.bootstrap_servers == "127.0.0.1:9092"
    assert conf.clickhouse.embedded
    assert conf.clickhouse.data_path == tmp_path / "clickhouse"
    assert (conf.events_topic, conf.dlq_topic) == ("trackflow.events", "trackflow.events.dlq")
    assert conf.stage == "dev"


def test_default_data_dir_is_dot_trackflow_in_the_working_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_settings({}).data_dir == tmp_path / ".trackflow"


def test_real_servers_are_used_when_configured() -> None:
    conf = load_settings(
        {
            "KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9093",
            "CLICKHOUSE_URL": "https://ch.example:8443",
            "CLICKHOUSE_DATABASE": "tf",
        }
    )
    assert not conf.embedded_kafka
    assert conf.bootstrap_servers == "k1:9092,k2:9093"
    assert not conf.clickhouse.embedded
    assert conf.clickhouse.secure
    assert conf.clickhouse.database == "tf"


def test_settings_are_frozen() -> None:
    conf = load_settings({})
    with pytest.raises(AttributeError):
        conf.stage = "prod"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"KAFKA_BOOTSTRAP_SERVERS": "localhost"}, "KAFKA_BOOTSTRAP_SERVERS"),
        ({"CLICKHOUSE_URL": "localhost:8123"}, "CLICKHOUSE_URL"),
        ({"CLICKHOUSE_PORT": "http"}, "CLICKHOUSE_PORT"),
        ({"TRACKFLOW_STAGE": "staging"}, "TRACKFLOW_STAGE"),
        ({"TRACKFLOW_PRODUCE_TIMEOUT": "soon"}, "TRACKFLOW_PRODUCE_TIMEOUT"),
        ({"TRACKFLOW_PRODUCE_TIMEOUT": "0"}, "TRACKFLOW_PRODUCE_TIMEOUT"),
        ({"TRACKFLOW_EVENTS_TOPIC": "x", "TRACKFLOW_DLQ_TOPIC": "x"}, "TRACKFLOW_DLQ_TOPIC"),
        ({"TRACKFLOW_RETENTION_DAYS": "0"}, "TRACKFLOW_RETENTION_DAYS"),
        ({"TRACKFLOW_RETENTION_DAYS": "a year"}, "TRACKFLOW_RETENTION_DAYS"),
        ({"TRACKFLOW_RETENTION_DAYS": "3651"}, "TRACKFLOW_RETENTION_DAYS"),
        ({"TRACKFLOW_STAGE": "prod"}, "KAFKA_BOOTSTRAP_SERVERS"),
        ({"TRACKFLOW_STAGE": "prod", "KAFKA_BOOTSTRAP_SERVERS": "k:9092"}, "CLICKHOUSE_URL"),
        (
            {"TRACKFLOW_STAGE": "prod", "KAFKA_BOOTSTRAP_SERVERS": "k:9092", "CLICKHOUSE_URL": "http://ch:8123"},
            "TRACKFLOW_SALT_SECRET",
        ),
    ],
)
def test_malformed_settings_fail_naming_the_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert names in str(info.value)
