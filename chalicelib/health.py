"""``GET /health``: is the broker reachable, does ClickHouse answer.

The broker check opens a TCP connection to each bootstrap server (no Kafka
client, so it stays cheap); ClickHouse gets ``SELECT 1``. Both bounded by
``TIMEOUT_S``.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

from chalicelib.settings import Settings

TIMEOUT_S = 2.0


def broker_reachable(bootstrap: str | None) -> dict[str, Any]:
    """Whether one of the bootstrap servers accepts a TCP connection, and if not, why."""
    if not bootstrap:
        return {"ok": False, "error": "KAFKA_BOOTSTRAP_SERVERS is not set"}
    errors = []
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=TIMEOUT_S):
                return {"ok": True, "server": server.strip()}
        except (OSError, ValueError) as exc:
            errors.append(f"{server.strip()}: {exc}")
    return {"ok": False, "error": "; ".join(errors)}


def _clickhouse(reader: Callable[[], Any]) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        reader().query("SELECT 1", settings={"max_execution_time": TIMEOUT_S})
    except Exception as exc:  # any failure means "not reachable"; the message says why
        return {
            "ok": False,
            "error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}",
        }
    return {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 1)}


def check(settings: Settings, *, reader: Callable[[], Any]) -> dict[str, Any]:
    broker, clickhouse = broker_reachable(settings.bootstrap_servers), _clickhouse(reader)
    healthy = broker["ok"] and clickhouse["ok"]
    return {
        "status": "ok" if healthy else "degraded",
        "stage": settings.stage,
        "broker": broker,
        "clickhouse": clickhouse,
    }
