"""Compaction on the real engine: settle time, generations, concurrent runs, clean-up."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from chalicelib import rollups, runtime, stats
from chalicelib.clickhouse import EventWriter
from chalicelib.ingest import event_row
from chalicelib.kafka_event import KafkaRecord
from chalicelib.settings import Settings
from chalicelib.stats_params import parse_query

pytestmark = pytest.mark.integration

RECORD = KafkaRecord(topic="t", partition=0, offset=0, timestamp=0, key=None, value=None)


def _store(writer: EventWriter, count: int, *, day: str = "2026-11-20") -> None:
    at = int(datetime.fromisoformat(f"{day} 10:00:00").replace(tzinfo=UTC).timestamp() * 1000)
    events = []
    for n in range(count):
        event: dict[str, Any] = {name: "" for name in ("user_id", "url_query", "referrer", "referrer_domain", "title")}
        event |= {name: "" for name in ("screen", "language", "timezone", "environment", "sdk_version", "user_agent")}
        event |= {name: "" for name in ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")}
        event |= {
            "project_id": "development",
            "event_id": str(uuid.uuid4()),
            "type": "pageView",
            "timestamp": at + n * 1000,
            "client_ts": at + n * 1000,
            "received_at": at + n * 1000,
            "url": "https://shop.example/",
            "url_host": "shop.example",
            "url_path": f"/p{n % 3}",
            "anonymous_id": f"v{n % 4}",
            "session_id": f"s{n % 4}",
            "props": "{}",
        }
        events.append(event)
    writer.insert_events([event_row(e, RECORD) for e in events])


def _pageviews(client: Any) -> int:
    query = parse_query(
        {"from": "2026-11-20", "to": "2026-11-20"},
        now=datetime(2026, 11, 27, tzinfo=UTC),
        default_project="development",
    )
    value: int = stats.overview(client, query)["metrics"]["pageviews"]["value"]
    assert stats.breakdown(client, query, "pages") == stats.breakdown(client, query, "pages", rollups=False)
    return value


def test_a_day_changed_within_the_settle_time_waits_and_is_read_raw_meanwhile(pipeline: Settings) -> None:
    client = runtime.rollup_client()
    _store(runtime.writer(), 6)
    assert rollups.compact(client, settle_s=60).days == 0  # written a moment ago: an insert may still be running
    assert rollups.status(client) == {"days": 1, "clean": 0, "waiting": 1, "generations": 0}
    assert _pageviews(runtime.reader()) == 6
    assert rollups.compact(client, settle_s=0).days == 1
    assert rollups.status(client)["clean"] == 1
    assert _pageviews(runtime.reader()) == 6


def test_two_compactions_at_once_leave_the_numbers_exact(pipeline: Settings) -> None:
    _store(runtime.writer(), 9)
    from chalicelib.clickhouse import connect

    clients = [connect(pipeline.clickhouse, database=pipeline.clickhouse.database, private=True) for _ in range(2)]
    threads = [threading.Thread(target=rollups.compact, args=(c,), kwargs={"settle_s": 0}) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert rollups.status(clients[0])["clean"] == 1
    assert _pageviews(runtime.reader()) == 9


def test_a_late_event_dirties_its_day_and_the_old_generation_goes_after_the_grace(
    pipeline: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = runtime.rollup_client()
    _store(runtime.writer(), 4)
    first = rollups.compact(client, settle_s=0).generation
    _store(runtime.writer(), 2)  # arrives late for the same day
    assert rollups.status(client)["clean"] == 0
    assert _pageviews(runtime.reader()) == 6  # the day is read raw until compacted again
    second = rollups.compact(client, settle_s=0).generation
    assert second is not None and first is not None and second > first
    assert _pageviews(runtime.reader()) == 6
    monkeypatch.setattr(rollups, "SUPERSEDED_GRACE_S", 0.0)
    time.sleep(0.01)
    assert rollups.compact(client, settle_s=0).superseded_deleted == 1
    gens = client.query("SELECT DISTINCT gen FROM rollup_page_days").result_rows
    assert gens == [(second,)]
    assert _pageviews(runtime.reader()) == 6
