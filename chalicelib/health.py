"""``GET /health``: is the broker reachable, does ClickHouse answer.

The broker check opens a TCP connection to each bootstrap server (no Kafka
client, so it stays cheap); against a secured cluster (TLS or SASL) it asks
for the cluster's metadata with the configured credentials instead, so a
refused password or a TLS mismatch shows here, in words. ClickHouse gets
``SELECT 1``. Both run at once and
the answer comes within ``BUDGET_S`` whatever is down: a check still waiting
then (a server that accepts connections and never answers) counts as failed.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from chalicelib.kafka_security import KafkaSecurity
from chalicelib.settings import Settings

TIMEOUT_S = 1.5
BUDGET_S = 1.8


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


def broker_authenticated(bootstrap: str, security: KafkaSecurity) -> dict[str, Any]:
    """Whether the cluster answers a metadata request made with the configured security, and if not, why."""
    from confluent_kafka import Producer

    from chalicelib.kafka_diagnosis import ClientErrors

    errors = ClientErrors(security)
    client = None
    try:
        client = Producer({"bootstrap.servers": bootstrap, **errors.config(), **security.confluent()})
        client.list_topics(timeout=TIMEOUT_S)
    except Exception as exc:  # any failure means "not reachable"; the client's own reports say why
        if client is not None:
            with contextlib.suppress(Exception):
                client.poll(0)  # deliver the reports the client queued
        return {"ok": False, "security": security.describe(), "error": errors.reason() or str(exc)}
    return {"ok": True, "server": bootstrap, "security": security.describe()}


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


def _within(budget_s: float, checks: dict[str, Callable[[], dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Run the checks in threads at once; those without an answer after ``budget_s`` failed."""
    results: dict[str, dict[str, Any]] = {}

    def run(name: str, check: Callable[[], dict[str, Any]]) -> None:
        results[name] = check()

    threads = [threading.Thread(target=run, args=item, daemon=True) for item in checks.items()]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + budget_s
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    late = {"ok": False, "error": f"no answer within {budget_s:g} s"}
    return {name: dict(results.get(name) or late) for name in checks}


def _broker(settings: Settings) -> dict[str, Any]:
    security = settings.kafka_security
    if security.protocol == "PLAINTEXT":
        return broker_reachable(settings.bootstrap_servers)
    return broker_authenticated(settings.bootstrap_servers, security)


def check(settings: Settings, *, reader: Callable[[], Any]) -> dict[str, Any]:
    found = _within(
        BUDGET_S,
        {"broker": lambda: _broker(settings), "clickhouse": lambda: _clickhouse(reader)},
    )
    broker, clickhouse = found["broker"], found["clickhouse"]
    healthy = broker["ok"] and clickhouse["ok"]
    return {
        "status": "ok" if healthy else "degraded",
        "stage": settings.stage,
        "broker": broker,
        "clickhouse": clickhouse,
    }
