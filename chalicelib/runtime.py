"""Cached wiring for the handlers: settings, the Kafka sender, the ClickHouse writer.

Each accessor builds its object on first use and keeps it, so a warm Lambda
reuses connections and a cold one pays only for what it touches (``import app``
imports none of kafka-python or clickhouse-connect). Tests and the local dev
server hand in their own objects with :func:`configure`.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from chalicelib.settings import Settings, load_settings

_lock = threading.RLock()
_state: dict[str, Any] = {}


def configure(**objects: Any) -> None:
    """Use these objects (``settings``, ``sender``, ``writer``, ``projects``) instead of building them."""
    unknown = set(objects) - {"settings", "sender", "writer", "projects"}
    if unknown:
        raise TypeError(f"unknown runtime objects: {sorted(unknown)}")
    with _lock:
        _state.update(objects)


def reset() -> None:
    """Forget every cached object (the next call builds or needs them anew)."""
    with _lock:
        _state.clear()


def settings() -> Settings:
    with _lock:
        if "settings" not in _state:
            _state["settings"] = load_settings()
        return _state["settings"]


def sender() -> Any:
    """The Kafka sender shared by collect and the ingest dead-letter path."""
    with _lock:
        if "sender" not in _state:
            from chalicelib.producer import KafkaSender, backend_factory

            conf = settings()
            factory = backend_factory(
                conf.kafka_client,
                conf.bootstrap_servers,
                timeout_s=conf.produce_timeout_s,
                client_id=f"trackflow-{conf.stage}",
            )
            _state["sender"] = KafkaSender(factory, timeout_s=conf.produce_timeout_s, retry_after=conf.retry_after_s)
        return _state["sender"]


def writer() -> Any:
    with _lock:
        if "writer" not in _state:
            from chalicelib.clickhouse import EventWriter, connect

            conf = settings()
            _state["writer"] = EventWriter(
                connect(conf.clickhouse, database=conf.clickhouse.database), database=conf.clickhouse.database
            )
        return _state["writer"]


def projects() -> Any:
    """The project store: DynamoDB when TRACKFLOW_PROJECTS_TABLE is set, else SQLite; cached."""
    with _lock:
        if "projects" not in _state:
            from chalicelib.projects import CachedProjectStore, DynamoProjectStore, SqliteProjectStore

            conf = settings()
            if conf.projects_table:
                import boto3

                store: Any = DynamoProjectStore(boto3.resource("dynamodb").Table(conf.projects_table))
            else:
                store = SqliteProjectStore(conf.projects_path)
            _state["projects"] = CachedProjectStore(store)
        return _state["projects"]


def limiter() -> Any:
    with _lock:
        if "limiter" not in _state:
            from chalicelib.ratelimit import RateLimiter

            _state["limiter"] = RateLimiter()
        return _state["limiter"]


def daily_salt() -> bytes:
    """Today's salt for visitor hashes, recomputed when the UTC day changes."""
    from chalicelib.client_info import daily_salt as make

    day = time.strftime("%Y-%m-%d", time.gmtime())
    with _lock:
        cached = _state.get("salt")
        if cached is None or cached[0] != day:
            cached = _state["salt"] = (day, make(settings().salt_secret))
        salt: bytes = cached[1]
        return salt


def now_ms() -> int:
    return time.time_ns() // 1_000_000
