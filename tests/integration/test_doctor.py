"""`trackflow topics create` and `trackflow doctor`, as a person deploying runs them, on both brokers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import both_brokers

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["embedded", "apache"])
def broker(request: pytest.FixtureRequest) -> Any:
    return both_brokers(request)


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trackflow.cli", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_doctor_names_what_is_missing_until_topics_and_migrations_are_there(broker: Any, tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "CLICKHOUSE_", "TRACKFLOW_"))}
    env |= {
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "TRACKFLOW_DATA_DIR": str(tmp_path),
        "TRACKFLOW_EVENTS_TOPIC": f"ev-{suffix}",
        "TRACKFLOW_DLQ_TOPIC": f"dlq-{suffix}",
    }
    before = _cli("doctor", env=env)
    assert before.returncode == 1
    assert f"FAIL  topic        ev-{suffix} is missing: run `trackflow topics create`" in before.stdout
    assert "FAIL  migrations" in before.stdout and "trackflow migrate" in before.stdout
    assert "ok    broker" in before.stdout

    created = _cli("topics", "create", "--partitions", "3", env=env)
    assert created.returncode == 0, created.stderr
    assert f"ev-{suffix}: created, 3 partition(s)" in created.stdout
    assert f"dlq-{suffix}: created, 1 partition(s)" in created.stdout
    assert "replication factor 1" in created.stdout  # a single broker holds one copy
    again = _cli("topics", "create", "--partitions", "3", env=env)
    assert f"ev-{suffix}: exists, 3 partition(s)" in again.stdout  # left as it was
    fewer = _cli("topics", "create", env=env)  # 4 partitions wanted, 3 there: refused, saying how to fix it
    assert fewer.returncode == 1 and f"topic ev-{suffix} exists with 3 partition(s), not 4" in fewer.stderr

    assert _cli("migrate", env=env).returncode == 0
    after = _cli("doctor", env=env)
    assert after.returncode == 0, after.stdout + after.stderr
    assert "ok    clickhouse" in after.stdout and "version" in after.stdout


def test_doctor_says_how_to_get_a_broker_when_none_answers(tmp_path: Path) -> None:
    from trackflow.broker import free_port

    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "CLICKHOUSE_", "TRACKFLOW_"))}
    env |= {"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}", "TRACKFLOW_DATA_DIR": str(tmp_path)}
    started = time.monotonic()
    result = _cli("doctor", env=env)
    took = time.monotonic() - started
    assert result.returncode == 1
    assert result.stdout.startswith("checking Kafka at 127.0.0.1:")  # said before the wait, not after
    assert "FAIL  broker" in result.stdout and "trackflow kafka" in result.stdout
    assert "checking ClickHouse at " in result.stdout
    assert took < 15, took  # 4 s for the broker, the rest is the interpreter and chDB
    assert "ERROR" not in result.stderr and "%3|" not in result.stderr, result.stderr
