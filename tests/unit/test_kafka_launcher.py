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
