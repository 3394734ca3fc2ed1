"""trackflow.load: generated traffic is valid, varied and reproducible."""

from __future__ import annotations

from collections import Counter
from typing import Any

from chalicelib.ingest import event_row
from chalicelib.kafka.records import KafkaRecord
from trackflow.load import Traffic, batches, sites

END_MS = 1_793_577_600_000  # 2026-11-01


def _events(count: int, seed: int = 7) -> list[dict[str, Any]]:
    return list(Traffic(sites(["a", "b", "c"]), end_ms=END_MS, days=30, seed=seed).events(count))


def test_every_generated_event_is_one_ingest_would_store() -> None:
    record = KafkaRecord(topic="t", partition=0, offset=0, timestamp=0, key=None, value=None)
    events = _events(3000)
    assert len(events) == 3000
    for event in events:
        event_row(event, record)  # raises PoisonError for anything ingest would dead-letter
    assert all(END_MS - 30 * 86_400_000 <= e["timestamp"] <= END_MS + 3_600_000 for e in events)


def test_traffic_looks_like_a_site_with_sessions_errors_and_a_few_bots() -> None:
    events = _events(20_000)
    kinds = Counter(e["type"] for e in events)
    assert kinds["pageView"] > kinds["click"] > kinds["error"] > 0
    assert kinds["addToCart"] > 0 and kinds["signup"] > 0
    projects = Counter(e["project_id"] for e in events)
    assert projects["a"] > projects["b"] > projects["c"] > 0
    sessions = {e["session_id"] for e in events}
    visitors = {e["anonymous_id"] for e in events}
    assert len(events) > len(sessions) > len(visitors) > 100
    bots = sum(1 for e in events if e["is_bot"]) / len(events)
    assert 0.005 < bots < 0.06
    assert len({e["url_path"] for e in events}) > 10 and any(e["utm_source"] for e in events)


def test_the_same_seed_gives_the_same_events_and_another_seed_other_ids() -> None:
    assert _events(500) == _events(500)
    assert {e["event_id"] for e in _events(500)}.isdisjoint(e["event_id"] for e in _events(500, seed=8))


def test_batches_cover_everything_in_order() -> None:
    assert [len(b) for b in batches(iter(range(25)), 10)] == [10, 10, 5]


def test_no_event_is_in_the_future_even_in_sessions_that_start_at_the_end() -> None:
    # A period of minutes: most sessions start near its end, and their later pages would run past it.
    events = list(Traffic(sites(["a"]), end_ms=END_MS, days=0.01, seed=7).events(3000))
    assert max(e["timestamp"] for e in events) <= END_MS
    assert all(e["received_at"] - e["timestamp"] == 40 for e in events)  # moved whole
    assert sum(e["timestamp"] > END_MS - 60_000 for e in events) > 10  # still up to the end


def test_events_come_in_time_order_as_ingest_receives_them_most_in_the_afternoon() -> None:
    # Written in this order, the table's parts hold the hours they were written in, as with real traffic.
    events = list(Traffic(sites(["a", "b"]), end_ms=END_MS, days=2, seed=7).events(20_000))
    times = [e["timestamp"] for e in events]
    late = [n for n in range(len(times) - 1) if times[n] > times[n + 1]]
    # Only sessions that would have run past the end, moved back to end there, come out of order.
    assert all(times[n] > END_MS - 3_600_000 for n in late)
    assert times[: len(times) * 9 // 10] == sorted(times[: len(times) * 9 // 10])
    hours = Counter(t % 86_400_000 // 3_600_000 for t in times)
    assert hours[15] > 5 * hours[3] > 0


def test_a_few_minutes_around_the_quietest_moment_still_get_every_event() -> None:
    three = END_MS - 21 * 3_600_000  # 03:00 UTC
    events = list(Traffic(sites(["a"]), end_ms=three + 300_000, days=600_000 / 86_400_000, seed=7).events(50))
    assert len(events) == 50
