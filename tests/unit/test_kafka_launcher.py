"""trackflow.kafka without running it: the pinned version and the broker's settings."""

from __future__ import annotations

import re
from pathlib import Path

from trackflow.kafka import ROOT, ApacheKafka, _pom_version


def test_the_pom_pins_the_same_kafka_as_the_docker_compose_image() -> None:
    compose = (ROOT / "infra" / "docker-compose.yml").read_text()
    image = re.search(r"image: apache/kafka:([0-9.]+)", compose)
    assert image is not None
    assert _pom_version() == image.group(1)


def test_a_single_kraft_node_with_its_log_under_the_home(tmp_path: Path) -> None:
    kafka = ApacheKafka(tmp_path, port=19092)
    settings = dict(line.split("=", 1) for line in kafka._properties().read_text().splitlines())
    assert settings["process.roles"] == "broker,controller"
    assert settings["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert settings["log.dirs"] == str(tmp_path / "data")
    assert settings["offsets.topic.replication.factor"] == "1"


def test_a_sasl_ssl_listener_serves_tls_from_a_throwaway_ca_and_scram_for_one_saved_user(tmp_path: Path) -> None:
    kafka = ApacheKafka(tmp_path, port=19092, sasl_port=19094)
    kafka.secure = secure = kafka._secure_listener()
    settings = dict(line.split("=", 1) for line in kafka._properties().read_text().splitlines())
    assert settings["listeners"] == (
        "PLAINTEXT://127.0.0.1:19092,SASL_SSL://127.0.0.1:19094,CONTROLLER://127.0.0.1:19093"
    )
    assert "SASL_SSL:SASL_SSL" in settings["listener.security.protocol.map"]
    assert settings["listener.name.sasl_ssl.ssl.keystore.type"] == "PEM"
    keystore = Path(settings["listener.name.sasl_ssl.ssl.keystore.location"]).read_text()
    assert keystore.startswith("-----BEGIN PRIVATE KEY-----") and keystore.count("BEGIN CERTIFICATE") == 2
    assert (tmp_path / "tls" / "credentials.json").stat().st_mode & 0o777 == 0o600
    assert secure.env()["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert secure.ca_file.read_text().startswith("-----BEGIN CERTIFICATE-----")
    # Made once: a second start keeps the same CA and password.
    assert ApacheKafka(tmp_path, port=19092, sasl_port=19094)._secure_listener() == secure
