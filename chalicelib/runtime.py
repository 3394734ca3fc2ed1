"""Cached wiring for the handlers: settings, the Kafka sender, the ClickHouse writer.

Each accessor builds its object on first use and keeps it, so a warm Lambda
reuses connections and a cold one pays only for what it touches (``import app``
imports none of kafka-python or clickhouse-connect). Tests and the local dev
server hand in their own objects with :func:`configure`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from chalicelib.settings import Settings, load_settings

_lock = threading.RLock()
_state: dict[str, Any] = {}
_building: dict[str, threading.Lock] = {}


def configure(**objects: Any) -> None:
    """Use these objects (``settings``, ``sender``, ``writer``, ``reader``, ``projects``) instead of building them."""
    unknown = set(objects) - {"settings", "sender", "writer", "reader", "projects"}
    if unknown:
        raise TypeError(f"unknown runtime objects: {sorted(unknown)}")
    with _lock:
        _state.update(objects)


def reset() -> None:
    """Forget every cached object (the next call builds or needs them anew)."""
    with _lock:
        _state.clear()


def _cached(name: str, build: Callable[[], Any]) -> Any:
    """The object kept under ``name``, built by ``build`` the first time.

    Each name has its own lock, held while building: a client that takes long
    to connect (ClickHouse down) never holds up the others (collect's producer).
    """
    if name in _state:
        return _state[name]
    with _lock:
        lock = _building.setdefault(name, threading.Lock())
    with lock:
        if name not in _state:
            value = build()
            with _lock:
                _state[name] = value
        return _state[name]


def set_draining(on: bool) -> None:
    """While on, collect answers 503 (the local dev server is stopping and drains what Kafka holds)."""
    with _lock:
        _state["draining"] = on


def draining() -> bool:
    return bool(_state.get("draining"))


def settings() -> Settings:
    conf: Settings = _cached("settings", load_settings)
    return conf


def _build_sender() -> Any:
    from chalicelib.kafka.producer import KafkaSender, backend_factory

    conf = settings()
    factory = backend_factory(
        conf.kafka_client,
        conf.bootstrap_servers,
        timeout_s=conf.produce_timeout_s,
        client_id=f"trackflow-{conf.stage}",
        security=conf.kafka_security,
    )
    return KafkaSender(factory, timeout_s=conf.produce_timeout_s, retry_after=conf.retry_after_s)


def sender() -> Any:
    """The Kafka sender shared by collect and the ingest dead-letter path."""
    return _cached("sender", _build_sender)


def _build_writer() -> Any:
    from chalicelib.storage.clickhouse import EventWriter, connect

    conf = settings()
    return EventWriter(connect(conf.clickhouse, database=conf.clickhouse.database), database=conf.clickhouse.database)


def writer() -> Any:
    return _cached("writer", _build_writer)


def erased_ids() -> Any:
    """The erased people's ids, for ingest (chalicelib.ownership.people.ErasedIds), on the writer's ClickHouse."""

    def build() -> Any:
        from chalicelib.ownership.people import ErasedIds
        from chalicelib.storage.clickhouse import connect

        conf = settings()
        return ErasedIds(connect(conf.clickhouse, database=conf.clickhouse.database))

    return _cached("erased_ids", build)


def reader() -> Any:
    """The ClickHouse client the stats API queries with (chDB shares one engine with the writer)."""

    def build() -> Any:
        from chalicelib.storage.clickhouse import connect

        conf = settings()
        return connect(conf.clickhouse, database=conf.clickhouse.database, read_only=True)

    return _cached("reader", build)


def rollup_client() -> Any:
    """A writable ClickHouse client of its own for rollup compaction (never queues behind ingest's inserts)."""

    def build() -> Any:
        from chalicelib.storage.clickhouse import connect

        conf = settings()
        return connect(conf.clickhouse, database=conf.clickhouse.database, private=True)

    return _cached("rollup_client", build)


def _build_projects() -> Any:
    from chalicelib.projects import CachedProjectStore, DynamoProjectStore, SqliteProjectStore

    conf = settings()
    if conf.projects_table:
        import boto3
        from botocore.config import Config

        # Bounded: an unreachable DynamoDB answers 503 in seconds, not after boto3's default retries.
        bounded = Config(connect_timeout=2, read_timeout=3, retries={"max_attempts": 2, "mode": "standard"})
        return CachedProjectStore(
            DynamoProjectStore(boto3.resource("dynamodb", config=bounded).Table(conf.projects_table))
        )
    return CachedProjectStore(SqliteProjectStore(conf.projects_path))


def projects() -> Any:
    """The project store: DynamoDB when TRACKFLOW_PROJECTS_TABLE is set, else SQLite; cached."""
    return _cached("projects", _build_projects)


def _build_limiter() -> Any:
    from chalicelib.collect.ratelimit import RateLimiter

    return RateLimiter()


def limiter() -> Any:
    return _cached("limiter", _build_limiter)


def daily_salt() -> bytes:
    """Today's salt for visitor hashes, recomputed when the UTC day changes."""
    from chalicelib.collect.client_info import daily_salt as make

    now = datetime.now(UTC)
    day = now.date()
    with _lock:
        cached = _state.get("salt")
        if cached is None or cached[0] != day:
            cached = _state["salt"] = (day, make(settings().resolved_salt_secret(), now))
        salt: bytes = cached[1]
        return salt


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def retention() -> Any:
    """The process's retention schedule (chalicelib.storage.retention): a run at most every few hours."""

    def build() -> Any:
        from chalicelib.storage.retention import Schedule

        return Schedule()

    return _cached("retention", build)


def expire_if_due() -> Any:
    """Delete what is past retention, when this process has not done so for a while; what it found, or None."""
    return retention().run_if_due(
        rollup_client(),
        projects(),
        default_days=settings().retention_days,
        now=datetime.fromtimestamp(now_ms() / 1000, UTC),
        cluster=settings().clickhouse.cluster,
    )
