"""chalicelib.health: broker and ClickHouse reachability, with fakes for the reader."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib.health import broker_reachable, cached_check, check
from chalicelib.settings import load_settings


@pytest.fixture
def listening() -> Iterator[str]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    yield f"127.0.0.1:{server.getsockname()[1]}"
    server.close()


def _closed_port() -> str:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return f"127.0.0.1:{port}"


def test_a_broker_counts_as_reachable_when_any_bootstrap_server_accepts(listening: str) -> None:
    assert broker_reachable(f"{_closed_port()},{listening}") == {"ok": True, "server": listening}


def test_an_unreachable_broker_names_each_server_tried() -> None:
    dead = _closed_port()
    result = broker_reachable(dead)
    assert result["ok"] is False and dead in result["error"]
    assert broker_reachable(None) == {"ok": False, "error": "KAFKA_BOOTSTRAP_SERVERS is not set"}


class _Reader:
    def __init__(self, fail: bool) -> None:
        self.fail = fail

    def query(self, sql: str, **_: Any) -> None:
        if self.fail:
            raise ConnectionError("Connection refused\nmore detail")


def test_check_is_degraded_with_the_first_line_of_the_clickhouse_error(listening: str) -> None:
    settings = load_settings({"KAFKA_BOOTSTRAP_SERVERS": listening})
    healthy = check(settings, reader=lambda: _Reader(fail=False))
    assert healthy["status"] == "ok" and healthy["clickhouse"]["ok"]
    sick = check(settings, reader=lambda: _Reader(fail=True))
    assert sick["status"] == "degraded"
    assert sick["clickhouse"] == {"ok": False, "error": "ConnectionError: Connection refused"}


def test_cached_check_answers_from_the_last_probe_until_it_is_old(listening: str) -> None:
    settings = load_settings({"KAFKA_BOOTSTRAP_SERVERS": listening})
    now = [100.0]
    reader = _Reader(fail=False)
    calls: list[int] = []

    def counted() -> _Reader:
        calls.append(1)
        return reader

    first = cached_check(settings, reader=counted, clock=lambda: now[0])
    now[0] += 5
    assert cached_check(settings, reader=counted, clock=lambda: now[0]) is first
    assert len(calls) == 1
    reader.fail = True
    now[0] += 6  # older than CACHE_S: probed again
    assert cached_check(settings, reader=counted, clock=lambda: now[0])["status"] == "degraded"
    other = load_settings({"KAFKA_BOOTSTRAP_SERVERS": listening})  # other settings never get this answer
    assert cached_check(other, reader=counted, clock=lambda: now[0]) is not first
    assert len(calls) == 3


class _Probing:
    def __init__(self, error: Exception | None) -> None:
        self.error = error
        self.topics: list[str] = []

    def probe(self, topic: str, timeout_s: float) -> None:
        self.topics.append(topic)
        if self.error:
            raise self.error


def test_a_secured_cluster_is_probed_through_the_process_producer(listening: str) -> None:
    settings = load_settings(
        {
            "KAFKA_BOOTSTRAP_SERVERS": listening,
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KAFKA_SASL_USERNAME": "u",
            "KAFKA_SASL_PASSWORD": "p",
        }
    )
    sender = _Probing(None)
    body = check(settings, reader=lambda: _Reader(fail=False), sender=lambda: sender)
    assert body["broker"]["ok"] and sender.topics == [settings.events_topic]
    refused = _Probing(RuntimeError("SASL authentication error: Authentication failed"))
    body = check(settings, reader=lambda: _Reader(fail=False), sender=lambda: refused)
    assert body["broker"] == {
        "ok": False,
        "security": "SASL_SSL SCRAM-SHA-512 (user u)",
        "error": "SASL authentication error: Authentication failed",
    }
