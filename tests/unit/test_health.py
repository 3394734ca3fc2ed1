"""chalicelib.health: broker and ClickHouse reachability, with fakes for the reader."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib.health import broker_reachable, check
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
