"""``GET /health``: is the broker reachable, does ClickHouse answer.

The broker check asks for the events topic's metadata over the producer
collect already holds (``sender``): a refused password, a TLS mismatch, a
partition without a leader or with too few in-sync replicas for ``acks=all``
(``NOT_ENOUGH_REPLICAS``) shows here, in words, and a new client per call
(a TLS and SASL handshake each time) is never built. Without a sender it opens
a TCP connection to each bootstrap server, or against a secured cluster asks
a client of its own. ClickHouse gets
``SELECT 1``. Both run at once and the answer comes within ``BUDGET_S``
whatever is down: a check still waiting then (a server that accepts
connections and never answers) counts as failed.

:func:`cached_check` answers from the last check for ``CACHE_S`` seconds, so a
trickle of health calls costs one probe per instance per period, not one each.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from chalicelib.kafka.security import KafkaSecurity
from chalicelib.settings import Settings

TIMEOUT_S = 1.5
BUDGET_S = 1.8
CACHE_S = 10.0


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

    from chalicelib.kafka.diagnosis import ClientErrors

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


def _broker(settings: Settings, sender: Callable[[], Any] | None) -> dict[str, Any]:
    security = settings.kafka_security
    if sender is None:
        if security.protocol == "PLAINTEXT":
            return broker_reachable(settings.bootstrap_servers)
        return broker_authenticated(settings.bootstrap_servers, security)
    try:
        sender().probe(settings.events_topic, TIMEOUT_S)
    except Exception as exc:  # any failure means "not reachable"; the message says why
        return {"ok": False, "security": security.describe(), "error": str(exc)}
    return {"ok": True, "server": settings.bootstrap_servers, "security": security.describe()}


def check(settings: Settings, *, reader: Callable[[], Any], sender: Callable[[], Any] | None = None) -> dict[str, Any]:
    """Both checks now; ``sender`` (the process's Kafka sender) carries the secured-cluster probe."""
    found = _within(
        BUDGET_S,
        {"broker": lambda: _broker(settings, sender), "clickhouse": lambda: _clickhouse(reader)},
    )
    broker, clickhouse = found["broker"], found["clickhouse"]
    healthy = broker["ok"] and clickhouse["ok"]
    return {
        "status": "ok" if healthy else "degraded",
        "stage": settings.stage,
        "broker": broker,
        "clickhouse": clickhouse,
    }


_cache_lock = threading.Lock()
_last: list[tuple[float, Settings, dict[str, Any]]] = []


def cached_check(
    settings: Settings,
    *,
    reader: Callable[[], Any],
    sender: Callable[[], Any] | None = None,
    max_age_s: float = CACHE_S,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """The last answer for these settings while younger than ``max_age_s``; else a new check (callers wait for it)."""
    with _cache_lock:
        if _last and _last[0][1] is settings and clock() - _last[0][0] < max_age_s:
            return _last[0][2]
        body = check(settings, reader=reader, sender=sender)
        _last[:] = [(clock(), settings, body)]
        return body
