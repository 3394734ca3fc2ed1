"""Compaction on the real engine: settle time, leases, interrupted rounds, late inserts, row-sized rounds,
sessions across hours, and the upgrade from per-day rollups with 90 days of history."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chalicelib import runtime
from chalicelib.ingest import event_row
from chalicelib.kafka.records import KafkaRecord
from chalicelib.rollups import compaction as rollups
from chalicelib.rollups import split as rollup_split
from chalicelib.rollups.sql import PREFIX_NAMES, PREFIX_PARTS, PREFIXES
from chalicelib.settings import Settings
from chalicelib.stats import reports as stats
from chalicelib.stats.params import parse_query
from chalicelib.stats.sql import DIMENSIONS
from chalicelib.storage.clickhouse import EVENT_COLUMNS, EventWriter, connect

pytestmark = pytest.mark.integration

RECORD = KafkaRecord(topic="t", partition=0, offset=0, timestamp=0, key=None, value=None)
DAY = "2026-11-20"


def _event(at: datetime, n: int, *, session: str | None = None, kind: str = "pageView") -> dict[str, Any]:
    event: dict[str, Any] = {name: "" for name in ("user_id", "url_query", "referrer", "referrer_domain", "title")}
    event |= {name: "" for name in ("screen", "language", "timezone", "environment", "sdk_version", "user_agent")}
    event |= {name: "" for name in ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")}
    ms = int(at.timestamp() * 1000)
    return event | {
        "project_id": "development",
        "event_id": str(uuid.uuid4()),
        "type": kind,
        "timestamp": ms,
        "client_ts": ms,
        "received_at": ms,
        "url": "https://shop.example/",
        "url_host": "shop.example",
        "url_path": f"/p{n % 3}",
        "anonymous_id": f"v{n % 4}",
        "session_id": session or f"s{n % 4}",
        "props": "{}",
    }


# Two elements clicked, two errors (one message with two stacks): what the clicks and errors reports group.
_PROPS = {
    "pageView": ("{}", "{}"),
    "signup": ('{"plan":"pro"}', '{"plan":"free"}'),
    "click": ('{"tag":"A","id":"","text":"Docs","href":"/docs"}', '{"tag":"BUTTON","id":"buy","text":"Buy","href":""}'),
    "error": (
        '{"message":"boom","source":"app.js","stack":"at a (app.js:1)"}',
        '{"message":"boom","source":"app.js","stack":"at b (app.js:2)"}',
    ),
}


def _store(writer: EventWriter, count: int, *, hour: int = 10, day: str = DAY) -> list[dict[str, Any]]:
    at = datetime.fromisoformat(f"{day} {hour:02}:00:00").replace(tzinfo=UTC)
    events = [_event(at + timedelta(seconds=n), n) for n in range(count)]
    writer.insert_events([event_row(e, RECORD) for e in events])
    return events


def _query(first: str = DAY, last: str = DAY, **extra: str) -> Any:
    return parse_query(
        {"from": first, "to": last, "bots": "exclude", **extra},
        now=datetime(2026, 11, 27, tzinfo=UTC),
        default_project="development",
    )


def _same_as_raw(client: Any, query: Any) -> dict[str, Any]:
    """Every rollup-capable report equals its raw-events form; returns the overview's metrics."""
    overview = stats.overview(client, query)
    assert overview == stats.overview(client, query, rollups=False)
    assert stats.timeseries(client, query) == stats.timeseries(client, query, rollups=False)
    # Every breakdown at once (the session ones in one statement), and one on its own.
    every = list(DIMENSIONS)
    assert stats.breakdowns(client, query, every) == stats.breakdowns(client, query, every, rollups=False)
    assert stats.breakdown(client, query, "exit_pages") == stats.breakdown(client, query, "exit_pages", rollups=False)
    assert stats.clicks(client, query) == stats.clicks(client, query, rollups=False)
    assert stats.errors(client, query) == stats.errors(client, query, rollups=False)
    custom = stats.custom_events(client, query, name=None, prop=None)
    assert custom == stats.custom_events(client, query, name=None, prop=None, rollups=False)
    return {name: value["value"] for name, value in overview["metrics"].items()}


def test_an_hour_changed_within_the_settle_time_waits_and_is_read_raw_meanwhile(pipeline: Settings) -> None:
    client = runtime.rollup_client()
    _store(runtime.writer(), 6)
    assert rollups.compact(client, settle_s=60).hours == 0  # written a moment ago: an insert may still be running
    waiting = rollups.backlog(client, settle_s=60)
    assert (waiting.hours, waiting.rows, waiting.clean_hours) == (1, 6, 0)
    assert waiting.oldest_hour_age_s > 86_400  # the 20th's 10:00 hour, days ago
    assert _same_as_raw(runtime.reader(), _query())["pageviews"] == 6
    done = rollups.compact(client, settle_s=0)
    assert (done.hours, done.days) == (1, 1)
    after = rollups.backlog(client)
    assert (after.hours, after.rows, after.clean_hours, after.clean_days) == (0, 0, 1, 1)
    assert _same_as_raw(runtime.reader(), _query())["pageviews"] == 6


def test_overlapping_runs_split_the_hours_between_them_and_leave_the_numbers_exact(pipeline: Settings) -> None:
    for hour in range(8, 16):
        _store(runtime.writer(), 5, hour=hour)
    clients = [connect(pipeline.clickhouse, database=pipeline.clickhouse.database, private=True) for _ in range(2)]
    results: list[rollups.CompactResult] = []

    def run(client: Any) -> None:
        results.append(rollups.compact(client, settle_s=0, budget_rows=20))  # four hours a round

    threads = [threading.Thread(target=run, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    # Each hour compacted by one run only: both took four, or one took four (or none: both claimed the same
    # four at once and let go of them) and the other found none.
    assert sum(r.hours for r in results) in (0, 4, 8)
    assert rollups.compact_all(clients[0], settle_s=0).hours == 8 - sum(r.hours for r in results)
    assert rollups.backlog(clients[0]).clean_hours == 8
    assert _same_as_raw(runtime.reader(), _query())["pageviews"] == 40


def test_of_two_claims_on_an_hour_the_one_recorded_later_lets_go_whatever_its_generation(
    pipeline: Settings,
) -> None:
    client = runtime.rollup_client()
    _store(runtime.writer(), 4)
    units = client.query(rollups.HOUR_TIER.candidates(), parameters={"settle": 0, "limit": 10}).result_rows
    # Run A found the hour, claimed it and saw no other claim: it compacts. Run B found the hour before A's
    # claim was recorded, took a lower generation (another machine's clock) and records its claim after A.
    first, second = rollups._new_generation(), rollups._new_generation() - 1_000_000
    assert rollups._claim(client, rollups.HOUR_TIER, list(units), first, 60.0) == list(units)
    assert rollups._claim(client, rollups.HOUR_TIER, list(units), second, 60.0) == []
    # B let go: its claim holds nothing up, A's live lease still keeps a third run off.
    assert rollups.backlog(client).interrupted == 0
    assert rollups.compact(client, settle_s=0).hours == 0


def test_a_live_lease_keeps_other_runs_off_and_an_expired_one_is_taken_over(pipeline: Settings) -> None:
    client = runtime.rollup_client()
    _store(runtime.writer(), 4)
    # A run that recorded its pending generation and wrote part of its rows, then died (its Lambda timed out).
    units = client.query(rollups.HOUR_TIER.candidates(), parameters={"settle": 0, "limit": 10}).result_rows
    gen = rollups._new_generation()
    assert rollups._claim(client, rollups.HOUR_TIER, list(units), gen, 2.0) == list(units)
    client.command(
        rollups.HOUR_TIER.statements[0],
        parameters={"gen": gen, "units": [(u[0], u[1]) for u in units], "days": [datetime(2026, 11, 20).date()]},
    )
    assert rollups.compact(client, settle_s=0).hours == 0  # the lease still runs
    assert rollups.backlog(client).interrupted == 0
    assert _same_as_raw(runtime.reader(), _query())["pageviews"] == 4  # the hour is dirty: read raw
    time.sleep(2.1)
    assert rollups.backlog(client).interrupted == 1
    assert rollups.compact(client, settle_s=0).hours == 1  # taken over; its rows replace the orphans
    assert _same_as_raw(runtime.reader(), _query())["pageviews"] == 4


def test_a_late_event_dirties_its_hour_and_the_newer_generation_replaces_the_rows_without_deletes(
    pipeline: Settings,
) -> None:
    client = runtime.rollup_client()
    _store(runtime.writer(), 4)
    first = rollups.compact(client, settle_s=0).generation
    _store(runtime.writer(), 2)  # arrives late for the same hour
    assert rollups.backlog(client).hours == 1
    assert _same_as_raw(runtime.reader(), _query())["pageviews"] == 6  # read raw until compacted again
    second = rollups.compact(client, settle_s=0).generation
    assert second is not None and first is not None and second > first
    assert _same_as_raw(runtime.reader(), _query())["pageviews"] == 6
    for table in rollups.ROLLUP_TABLES:
        client.command(f"OPTIMIZE TABLE {table} FINAL")  # what background merges do in time
        gens = {row[0] for row in client.query(f"SELECT DISTINCT gen FROM {table}").result_rows}
        assert first not in gens, table
    mutations = client.query("SELECT count() FROM system.mutations WHERE database = currentDatabase()")
    assert mutations.result_rows[0][0] == 0
    assert _same_as_raw(runtime.reader(), _query())["pageviews"] == 6


class _SlowInsert:
    """A client whose event insert lands only after ``during`` ran: a compaction reading meanwhile."""

    def __init__(self, client: Any, during: Any) -> None:
        self._client, self._during = client, during

    def insert(self, table: str, rows: Sequence[Any], **kwargs: Any) -> Any:
        if table.endswith(".events"):
            self._during()
        return self._client.insert(table, rows, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_an_insert_that_lands_after_a_round_read_its_hour_is_counted_after_the_next_round(
    pipeline: Settings,
) -> None:
    client = runtime.rollup_client()
    _store(runtime.writer(), 3)
    rounds: list[int] = []
    slow = EventWriter(
        _SlowInsert(client, lambda: rounds.append(rollups.compact(client, settle_s=0).hours)),
        database=pipeline.clickhouse.database,
    )
    _store(slow, 2)
    assert rounds == [1]  # the round saw the mark made before the insert, and only three events
    assert rollups.backlog(client).hours == 1  # the mark after the insert left the hour dirty again
    assert _same_as_raw(runtime.reader(), _query())["pageviews"] == 5
    assert rollups.compact(client, settle_s=0).hours == 1
    assert _same_as_raw(runtime.reader(), _query())["pageviews"] == 5


def test_a_session_running_over_several_hours_counts_once_with_its_first_and_last_page(pipeline: Settings) -> None:
    client = runtime.rollup_client()
    start = datetime(2026, 11, 20, 9, 50, tzinfo=UTC)
    events = [_event(start + timedelta(minutes=minutes), n, session="long") for n, minutes in enumerate((0, 15, 80))]
    runtime.writer().insert_events([event_row(e, RECORD) for e in events])  # 09:50, 10:05, 11:10
    rollups.compact(client, settle_s=0)
    late = _event(start + timedelta(minutes=95), 3, session="long", kind="signup")  # 11:25, no page view
    runtime.writer().insert_events([event_row(late, RECORD)])
    metrics = _same_as_raw(runtime.reader(), _query())  # 09 and 10 from the rollups, 11 raw
    assert (metrics["sessions"], metrics["pageviews"], metrics["avg_session_s"]) == (1, 3, 95 * 60)
    entry = stats.breakdown(runtime.reader(), _query(), "entry_pages")["rows"]
    exit_ = stats.breakdown(runtime.reader(), _query(), "exit_pages")["rows"]
    assert [(r["value"], r["sessions"]) for r in entry] == [("/p0", 1)]
    assert [r["value"] for r in exit_] == ["/p2"]
    rollups.compact_all(client, settle_s=0)
    assert _same_as_raw(runtime.reader(), _query()) == metrics
    # A half-hour zone: its day starts at 18:30 UTC, in the middle of a compacted hour.
    kolkata = _query("2026-11-20", "2026-11-20", tz="Asia/Kolkata")
    _same_as_raw(runtime.reader(), kolkata)


def test_rounds_are_sized_by_rows_not_by_hours(pipeline: Settings) -> None:
    client = runtime.rollup_client()
    for hour, count in ((8, 30), (9, 5), (10, 5), (11, 5)):
        _store(runtime.writer(), count, hour=hour)
    # Newest first: 11, 10 and 9 fit in 16 rows; 08 alone is over the budget and still gets a round of its own.
    assert rollups.compact(client, settle_s=0, budget_rows=16).hours == 3
    assert rollups.compact(client, settle_s=0, budget_rows=16).hours == 1
    assert rollups.backlog(client).hours == 0


def upgrade(settings: Settings, store: Callable[[Any], None], *, before: int) -> Any:
    """A database migrated version by version, with ``store(client)`` run before migration ``before``
    (the data as an install older than it holds); a client on the database, fully migrated."""
    from chalicelib.storage.migrations import load_migrations
    from trackflow.dev import MIGRATIONS_DIR

    database = settings.clickhouse.database
    server = connect(settings.clickhouse)
    server.command(f"CREATE DATABASE {database}")
    client = connect(settings.clickhouse, database=database)
    for migration in load_migrations(MIGRATIONS_DIR, database=database):
        if migration.version == before:
            store(client)
        for statement in migration.statements:
            server.command(statement)
    return client


def test_upgrading_from_per_day_rollups_works_through_90_days_of_history_in_bounded_rounds(
    settings: Settings,
) -> None:
    end = datetime(2026, 11, 1, tzinfo=UTC)
    rows = [  # three page views in each of the 2,160 hours before the 1st
        event_row(_event(end - timedelta(hours=hour + 1) + timedelta(minutes=5 + n * 7), n), RECORD)
        for hour in range(90 * 24)
        for n in range(3)
    ]
    client = upgrade(settings, lambda c: c.insert("events", rows, column_names=EVENT_COLUMNS), before=8)  # under 007
    assert rollups.backlog(client).hours == 90 * 24
    rounds = 0
    while rollups.compact(client, settle_s=0, budget_rows=600).hours:  # 200 hours a round
        rounds += 1
        assert rounds <= 11, "compaction does not get through the backlog"
    assert rounds == 11
    rollups.compact_all(client, settle_s=0)
    after = rollups.backlog(client)
    assert (after.hours, after.days, after.clean_hours) == (0, 0, 90 * 24)
    assert after.clean_days == 90
    metrics = _same_as_raw(client, _query("2026-08-03", "2026-10-31"))
    assert metrics["pageviews"] == len(rows)


def test_a_late_event_that_moves_a_sessions_start_to_another_hour_leaves_no_stale_overview_row(
    pipeline: Settings,
) -> None:
    client = runtime.rollup_client()
    at = datetime(2026, 11, 20, 10, 30, tzinfo=UTC)
    runtime.writer().insert_events([event_row(_event(at, n, session="moved"), RECORD) for n in range(2)])
    rollups.compact_all(client, settle_s=0)
    assert _same_as_raw(runtime.reader(), _query())["sessions"] == 1
    early = _event(at - timedelta(minutes=50), 2, session="moved")  # 09:40: the session now starts an hour earlier
    runtime.writer().insert_events([event_row(early, RECORD)])
    assert rollups.compact_all(client, settle_s=0).days == 1
    metrics = _same_as_raw(runtime.reader(), _query())
    assert (metrics["sessions"], metrics["pageviews"]) == (1, 3)
    by_hour = client.query(
        "SELECT toHour(start_hour), sessions FROM rollup_session_starts FINAL WHERE sessions > 0"
    ).result_rows
    assert by_hour == [(9, 1)]


def test_a_late_event_that_moves_a_sessions_exit_page_leaves_no_stale_breakdown_row(pipeline: Settings) -> None:
    """The value a session had in an older generation of its day gets a row of zeros in the newer one:
    ``rollup_session_dims`` is keyed by value, and a key the newer generation doesn't write would keep its
    old row."""
    client = runtime.rollup_client()
    at = datetime(2026, 11, 20, 10, 30, tzinfo=UTC)
    first = [_event(at + timedelta(seconds=n), n, session="moved") for n in range(2)]  # /p0, then /p1
    runtime.writer().insert_events([event_row(e, RECORD) for e in first])
    rollups.compact_all(client, settle_s=0)
    _same_as_raw(runtime.reader(), _query())
    assert [r["value"] for r in stats.breakdown(runtime.reader(), _query(), "exit_pages")["rows"]] == ["/p1"]
    later = _event(at + timedelta(minutes=20), 2, session="moved")  # /p2, a late event: the new exit page
    runtime.writer().insert_events([event_row(later, RECORD)])
    assert rollups.compact_all(client, settle_s=0).days == 1
    _same_as_raw(runtime.reader(), _query())
    assert [r["value"] for r in stats.breakdown(runtime.reader(), _query(), "exit_pages")["rows"]] == ["/p2"]
    exits = client.query(  # each value's row of 10:00 and its row of the whole day
        "SELECT value, countIf(sessions = 0), countIf(sessions = 1) FROM rollup_session_dims FINAL "
        "WHERE dimension = 'exit_page' GROUP BY value ORDER BY value"
    ).result_rows
    assert exits == [("/p1", 2, 0), ("/p2", 0, 2)]


def test_a_breakdown_of_part_of_a_compacted_day_counts_the_sessions_started_inside_the_period_only(
    pipeline: Settings,
) -> None:
    """A day the period holds whole is read from each value's row of the day; of a day it holds in part (a
    half-hour zone, a rolling 24 h), the rows of the start hours inside it, and the sessions of the hour
    it starts or ends inside one by one."""
    client = runtime.rollup_client()
    starts = [(3, 0), (10, 15), (10, 45), (12, 0), (20, 0)]  # one session each, its entry page named after it
    events = []
    for n, (hour, minute) in enumerate(starts):
        at = datetime.fromisoformat(f"{DAY} {hour:02}:{minute:02}:00").replace(tzinfo=UTC)
        events += [_event(at + timedelta(seconds=k), n, session=f"at{hour}:{minute}") for k in range(2)]
        events[-2]["url_path"] = f"/{hour}:{minute}"
    runtime.writer().insert_events([event_row(e, RECORD) for e in events])
    rollups.compact_all(client, settle_s=0)
    # From 10:30 on, as a rolling period starts (10:00 is read one by one).
    rolling = replace(_query(), start=datetime.fromisoformat(f"{DAY} 10:30:00").replace(tzinfo=UTC))
    expected = {  # Asia/Kolkata's day ends at 18:30 UTC
        "UTC": ["/10:15", "/10:45", "/12:0", "/20:0", "/3:0"],
        "Asia/Kolkata": ["/10:15", "/10:45", "/12:0", "/3:0"],
        "rolling": ["/10:45", "/12:0", "/20:0"],
    }
    for name, query in (("UTC", _query()), ("Asia/Kolkata", _query(tz="Asia/Kolkata")), ("rolling", rolling)):
        rows = stats.breakdown(runtime.reader(), query, "entry_pages")
        assert rows == stats.breakdown(runtime.reader(), query, "entry_pages", rollups=False), name
        assert sorted(r["value"] for r in rows["rows"]) == expected[name], name


def test_days_compacted_before_their_session_dimension_rows_existed_read_exact_until_compaction_writes_them(
    pipeline: Settings,
) -> None:
    """Migration 017: a day generation written before it has no ``rollup_session_dims`` rows and no flag.
    Reports don't take its day as clean (its hourly rows answer) and the day tier writes it again."""
    client = runtime.rollup_client()
    for day in ("2026-11-19", "2026-11-20"):
        _store(runtime.writer(), 8, hour=9, day=day)
    rollups.compact_all(client, settle_s=0)
    query = _query("2026-11-19", "2026-11-20")
    metrics = _same_as_raw(runtime.reader(), query)
    client.command("TRUNCATE TABLE rollup_session_dims")  # as an install compacted under 016 has them
    client.command("ALTER TABLE rollup_day_gens UPDATE session_dims = 0 WHERE 1", settings={"mutations_sync": 2})
    rollup_split.CACHE.clear()
    assert (rollups.backlog(client).hours, rollups.backlog(client).days) == (0, 2)
    assert _same_as_raw(runtime.reader(), query) == metrics
    done = rollups.compact_all(client, settle_s=0)
    assert (done.hours, done.days) == (0, 2)
    written = "SELECT uniqExact(day) FROM rollup_session_dims FINAL WHERE sessions > 0"
    assert client.query(written).result_rows == [(2,)]
    assert _same_as_raw(runtime.reader(), query) == metrics


def test_a_day_still_going_sums_its_clean_hours_once_and_counts_sessions_running_past_them_once(
    pipeline: Settings,
) -> None:
    client, writer = runtime.rollup_client(), runtime.writer()
    for hour in (8, 9, 10):
        _store(writer, 12, hour=hour)  # sessions s0..s3 in every hour
    early = [_event(datetime(2026, 11, 20, 8, 30, tzinfo=UTC), n, session="early") for n in (0, 4)]  # visitor v0
    writer.insert_events([event_row(e, RECORD) for e in early])  # a session wholly inside the prefix
    rollups.compact_all(client, settle_s=0)
    current = _store(writer, 6, hour=11)  # s0..s3 run on into the hour traffic is in now
    writer.insert_events([event_row(_event(datetime(2026, 11, 20, 11, 40, tzinfo=UTC), 1, session="new"), RECORD)])
    done = rollups.compact(client, settle_s=60)  # the current hour is too fresh for the hour tier
    assert (done.hours, done.days, done.prefixes) == (0, 0, 1)
    summed = client.query(
        "SELECT through, sum(sessions), sum(pageviews) FROM rollup_prefix_starts FINAL GROUP BY through"
    ).result_rows
    assert summed == [(datetime(2026, 11, 20, 11, 0), 5, 38)]  # s0..s3 and early, as hours 8-10 show them
    assert rollups.compact(client, settle_s=60).prefixes == 0  # nothing changed before 11:00: done
    metrics = _same_as_raw(runtime.reader(), _query())
    assert (metrics["sessions"], metrics["pageviews"]) == (6, 45)
    for query in (
        _query("2026-11-19", "2026-11-21", interval="day"),  # whole clean days (none here) and the day going on
        _query("2026-11-19", "2026-11-21", interval="day", tz="America/New_York"),
        _query(tz="Asia/Kolkata"),  # half-hour edges: the day's prefix isn't used where a period cuts an hour
        parse_query({"period": "24h"}, now=datetime(2026, 11, 20, 11, 50, tzinfo=UTC), default_project="development"),
        parse_query({"period": "today"}, now=datetime(2026, 11, 20, 11, 50, tzinfo=UTC), default_project="development"),
    ):
        _same_as_raw(runtime.reader(), query)
    writer.insert_events([event_row(e, RECORD) for e in current])  # redelivered
    assert _same_as_raw(runtime.reader(), _query()) == metrics
    late = _event(datetime(2026, 11, 20, 9, 15, tzinfo=UTC), 8, session="early")  # the prefix no longer holds
    writer.insert_events([event_row(late, RECORD)])
    late_metrics = _same_as_raw(runtime.reader(), _query())
    assert (late_metrics["sessions"], late_metrics["pageviews"]) == (6, 46)
    assert rollups.compact_all(client, settle_s=0).hours == 2  # 09 and 11; the day is clean again
    assert _same_as_raw(runtime.reader(), _query()) == late_metrics
    for query in (  # the day read whole: one row for its traffic, one for its visitors
        _query("2026-11-19", "2026-11-21", interval="day"),
        _query("2026-11-19", "2026-11-21", interval="day", tz="Europe/London"),  # no offset in November
        _query("2026-11-19", "2026-11-21", interval="day", tz="America/New_York"),  # hourly rows: days straddle
    ):
        _same_as_raw(runtime.reader(), query)
    days = client.query("SELECT count() FROM rollup_traffic_days FINAL WHERE pageviews > 0").result_rows
    assert days == [(1,)]


def test_a_redelivered_batch_spanning_a_prefix_hour_and_the_current_one_counts_once_while_prefixes_change(
    pipeline: Settings,
) -> None:
    """What an event source mapping does after a timeout: records already written come again, cut into
    batches with other boundaries, here one reaching back into the day's prefix."""
    client, writer = runtime.rollup_client(), runtime.writer()
    earlier = {hour: _store(writer, 8, hour=hour) for hour in (8, 9, 10)}  # sessions s0..s3 in every hour
    rollups.compact_all(client, settle_s=0)
    current = [_event(datetime(2026, 11, 20, 11, 5, tzinfo=UTC) + timedelta(seconds=n), n) for n in range(8)]
    for batch in (current[:5], current[5:]):  # as first delivered
        writer.insert_events([event_row(e, RECORD) for e in batch])
    assert rollups.compact(client, settle_s=60).prefixes == 1  # hours 08-10, through 11:00
    queries = (
        _query(),
        _query(tz="Asia/Kolkata"),
        parse_query({"period": "24h"}, now=datetime(2026, 11, 20, 11, 50, tzinfo=UTC), default_project="development"),
    )
    expected = [_same_as_raw(runtime.reader(), query) for query in queries]
    assert (expected[0]["sessions"], expected[0]["pageviews"]) == (4, 32)
    # Redelivered with other boundaries: half of hour 09's events with the two halves' edges of hour 11.
    writer.insert_events([event_row(e, RECORD) for e in earlier[9][4:] + current[3:7]])
    assert [_same_as_raw(runtime.reader(), query) for query in queries] == expected  # 09 is dirty: no prefix past it
    assert rollups.compact(client, settle_s=60).prefixes == 1  # 09 too fresh: a prefix of hour 08 only
    throughs = client.query("SELECT DISTINCT through FROM rollup_prefix_starts FINAL ORDER BY through").result_rows
    assert throughs == [(datetime(2026, 11, 20, 9, 0),), (datetime(2026, 11, 20, 11, 0),)]
    assert [_same_as_raw(runtime.reader(), query) for query in queries] == expected
    writer.insert_events([event_row(e, RECORD) for e in current])  # and the whole current hour once more
    assert [_same_as_raw(runtime.reader(), query) for query in queries] == expected
    assert rollups.compact_all(client, settle_s=0).hours == 2  # 09 and 11: the day is clean
    assert [_same_as_raw(runtime.reader(), query) for query in queries] == expected


def test_a_session_running_past_the_prefix_counts_the_newest_generation_of_its_earlier_part_while_both_are_stored(
    pipeline: Settings,
) -> None:
    """The overview looks a running session's earlier parts up without FINAL (by ``session_hash``): a
    late event rewrote the 09:00 part, and until a merge the older generation's row is still there."""
    client, writer = runtime.rollup_client(), runtime.writer()
    client.command("SYSTEM STOP MERGES rollup_session_hours")
    try:
        at = datetime(2026, 11, 20, 9, 10, tzinfo=UTC)
        first = [_event(at + timedelta(minutes=m), n, session="long") for n, m in enumerate((0, 10))]
        writer.insert_events([event_row(e, RECORD) for e in first])
        rollups.compact_all(client, settle_s=0)
        late = _event(at + timedelta(minutes=30), 2, session="long")  # 09:40: one page more, the part ends later
        writer.insert_events([event_row(late, RECORD)])
        assert rollups.compact_all(client, settle_s=0).hours == 1
        parts = client.query(
            "SELECT gen, pageviews FROM rollup_session_hours WHERE session_id = 'long' ORDER BY gen"
        ).result_rows
        assert [views for _, views in parts] == [2, 3]  # both generations stored
        later = _event(datetime(2026, 11, 20, 10, 5, tzinfo=UTC), 3, session="long")  # runs on into 10:00
        writer.insert_events([event_row(later, RECORD)])
        assert rollups.compact(client, settle_s=60).prefixes == 1  # through 10:00; 10:00 is read raw
        metrics = _same_as_raw(runtime.reader(), _query())
        assert (metrics["sessions"], metrics["pageviews"]) == (1, 4)
        assert metrics["avg_session_s"] == 55 * 60  # 09:10 to 10:05
    finally:
        client.command("SYSTEM START MERGES rollup_session_hours")


def test_a_session_that_changes_visitor_id_and_runs_past_the_prefix_counts_its_first_events_visitor_once(
    pipeline: Settings,
) -> None:
    """A session may change visitor id midway (say, on consent). The prefix counted the visitor of its
    earlier part; merged with the part after the prefix, the session must name the same visitor (its first
    event's), whatever order its parts come in, or the overview counts two visitors where raw counts one."""
    client, writer = runtime.rollup_client(), runtime.writer()
    at = datetime(2026, 11, 20, 9, 10, tzinfo=UTC)
    before = [_event(at + timedelta(minutes=m), 0, session="consent") for m in (0, 10)]  # visitor v0
    writer.insert_events([event_row(e, RECORD) for e in before])
    rollups.compact_all(client, settle_s=0)
    after = _event(datetime(2026, 11, 20, 10, 5, tzinfo=UTC), 1, session="consent")  # visitor v1 from here
    writer.insert_events([event_row(after, RECORD)])
    assert rollups.compact(client, settle_s=60).prefixes == 1  # through 10:00; 10:00 is read raw
    metrics = _same_as_raw(runtime.reader(), _query())
    assert (metrics["visitors"], metrics["sessions"], metrics["pageviews"]) == (1, 1, 3)
    rollups.compact_all(client, settle_s=0)
    assert _same_as_raw(runtime.reader(), _query())["visitors"] == 1


@pytest.mark.parametrize(
    ("flag", "rows"),
    [
        ("whole_visitors", "ALTER TABLE rollup_prefix_starts DELETE WHERE start_hour = toDateTime(0, 'UTC')"),  # 016
        ("session_dims", "ALTER TABLE rollup_prefix_dims DELETE WHERE 1"),  # 018
    ],
)
def test_a_prefix_written_before_its_newer_rows_existed_is_not_used_and_the_next_round_writes_it_again(
    pipeline: Settings, flag: str, rows: str
) -> None:
    """Migrations 016 and 018: a prefix written before one of them has none of its rows (the visitors row,
    the session breakdowns' sums) and its generation not the flag. Reports don't use it (its day is read
    hour by hour) and compaction doesn't take it as written."""
    client, writer = runtime.rollup_client(), runtime.writer()
    _store(writer, 40, hour=9)  # sessions s0-s3 of visitors v0-v3, ending in the prefix
    rollups.compact_all(client, settle_s=0)
    at = datetime.fromisoformat(f"{DAY} 10:00:00").replace(tzinfo=UTC)
    writer.insert_events([event_row(_event(at + timedelta(seconds=n), 0, session="later"), RECORD) for n in range(3)])
    assert rollups.compact(client, settle_s=60).prefixes == 1  # through 10:00; 10:00 is read raw
    written = (
        "SELECT (SELECT count() FROM rollup_prefix_starts FINAL WHERE start_hour = toDateTime(0, 'UTC')), "
        "(SELECT count() FROM rollup_prefix_dims FINAL WHERE dimension = 'entry_page')"
    )
    assert client.query(written).result_rows == [(2, 3)]  # one visitors row per bot value; /p0, /p1, /p2
    sync = {"mutations_sync": 2}
    client.command(rows, settings=sync)
    client.command(f"ALTER TABLE rollup_prefix_gens UPDATE {flag} = 0 WHERE 1", settings=sync)
    rollup_split.CACHE.clear()
    assert _same_as_raw(runtime.reader(), _query())["visitors"] == 4
    assert rollups.compact(client, settle_s=60).prefixes == 1  # written again, with all its rows
    assert client.query(written).result_rows == [(2, 3)]
    assert _same_as_raw(runtime.reader(), _query())["visitors"] == 4


def test_hours_compacted_before_their_event_rows_existed_are_read_raw_by_those_reports_and_written_again(
    pipeline: Settings,
) -> None:
    """Migration 019: an hour compacted before it has no rollup_event_hours rows and its generation not
    the flag, nor its day rollup_event_days rows. The clicks, errors and custom events reports read the
    hour raw (the other reports still use its rollups) and the day is read hour by hour; compaction writes
    the hours again, newest first, then the day once every hour of it has its rows."""
    client, writer = runtime.rollup_client(), runtime.writer()
    for hour in (9, 10):  # a signup, then an error and two clicks, four times: two elements, two stacks
        at = datetime.fromisoformat(f"{DAY} {hour:02}:00:00").replace(tzinfo=UTC)
        kinds = ["error", "click", "click"]
        events = [_event(at + timedelta(seconds=n), n, kind=kinds[n % 3] if n else "signup") for n in range(13)]
        writer.insert_events([event_row(e | {"props": _PROPS[e["type"]][n % 2]}, RECORD) for n, e in enumerate(events)])
    rollups.compact_all(client, settle_s=0)
    written = "SELECT type, sum(events) FROM rollup_event_hours FINAL GROUP BY type ORDER BY type"
    assert client.query(written).result_rows == [("click", 16), ("error", 8), ("signup", 2)]

    def reports() -> tuple[list[int], ...]:
        reader, query = runtime.reader(), _query()
        custom = stats.custom_events(reader, query, name=None, prop=None)
        return tuple(
            [row["count"] for row in r["rows"]]
            for r in (stats.clicks(reader, query), stats.errors(reader, query), custom)
        )

    assert reports() == ([8, 8], [8], [2])
    sync = {"mutations_sync": 2}
    for table in ("rollup_event_hours", "rollup_event_days"):
        client.command(f"ALTER TABLE {table} DELETE WHERE 1", settings=sync)
    for gens in ("rollup_hour_gens", "rollup_day_gens"):
        client.command(f"ALTER TABLE {gens} UPDATE event_props = 0 WHERE 1", settings=sync)
    rollup_split.CACHE.clear()
    waiting = rollups.backlog(client)  # every other report still reads the hours from the rollups
    assert (waiting.clean_hours, waiting.clean_days, waiting.rewrite_hours, waiting.hours) == (2, 0, 2, 0)
    assert reports() == ([8, 8], [8], [2])
    _same_as_raw(runtime.reader(), _query())
    again = rollups.compact(client, settle_s=0, budget_rows=1)  # one hour a round: the newest first
    assert (again.hours, again.days) == (1, 0)  # the day waits for its 09:00
    assert rollups.backlog(client).rewrite_hours == 1
    assert client.query("SELECT DISTINCT hour FROM rollup_event_hours").result_rows == [
        (datetime.fromisoformat(f"{DAY} 10:00:00"),)
    ]
    assert reports() == ([8, 8], [8], [2])
    done = rollups.compact_all(client, settle_s=0)
    assert (done.hours, done.days) == (1, 1)
    assert rollups.backlog(client).rewrite_hours == 0
    assert client.query(written).result_rows == [("click", 16), ("error", 8), ("signup", 2)]
    days = "SELECT type, sum(events) FROM rollup_event_days FINAL GROUP BY type ORDER BY type"
    assert client.query(days).result_rows == [("click", 16), ("error", 8), ("signup", 2)]
    assert reports() == ([8, 8], [8], [2])
    _same_as_raw(runtime.reader(), _query())


def _running_day(writer: EventWriter) -> None:
    """Sessions of a day going on: ``done`` (08:10-08:20), ``quiet`` (09:00-09:05), ``runner`` (09:30-10:20
    in hours 09-10, then a page at 11:05 changes its exit page), ``brief`` (10:05-10:10, in the hour of
    runner's end but before it) and ``ender`` (10:40-10:50); the prefix ends at 11:00, the hour traffic is
    in now."""
    at = datetime.fromisoformat(f"{DAY} 00:00:00").replace(tzinfo=UTC)
    visits = {
        "done": [(8, 10, 0), (8, 20, 1)],
        "quiet": [(9, 0, 1), (9, 5, 2)],
        "runner": [(9, 30, 0), (10, 20, 1)],
        "brief": [(10, 5, 0), (10, 10, 1)],
        "ender": [(10, 40, 2), (10, 50, 2)],
    }
    events = [
        _event(at + timedelta(hours=h, minutes=m), n, session=session)
        for session, pages in visits.items()
        for h, m, n in pages
    ]
    writer.insert_events([event_row(e, RECORD) for e in events])


def test_a_breakdown_of_a_day_still_going_sums_the_sessions_over_before_the_earliest_running_one_ended(
    pipeline: Settings,
) -> None:
    """The prefix tier sums its sessions by when they ended (migration 018). A session running on past the
    prefix changes its exit page, so a report reads one by one every session that ended from the earliest
    end of a running one (``runner``, 10:20) on, and takes the others' sums."""
    client, writer = runtime.rollup_client(), runtime.writer()
    _running_day(writer)
    rollups.compact_all(client, settle_s=0)
    on = _event(datetime.fromisoformat(f"{DAY} 11:05:00").replace(tzinfo=UTC), 2, session="runner")
    writer.insert_events([event_row(on, RECORD)])
    assert rollups.compact(client, settle_s=60).prefixes == 1  # through 11:00
    slots = client.query(
        "SELECT end_slot, value, sessions FROM rollup_prefix_dims FINAL WHERE dimension = 'exit_page' ORDER BY end_slot"
    ).result_rows
    assert slots == [  # the hour before the prefix's last one, the minute in it
        (datetime(2026, 11, 20, 8, 0), "/p1", 1),
        (datetime(2026, 11, 20, 9, 0), "/p2", 1),
        (datetime(2026, 11, 20, 10, 10), "/p1", 1),
        (datetime(2026, 11, 20, 10, 20), "/p1", 1),  # runner, as the prefix saw it
        (datetime(2026, 11, 20, 10, 50), "/p2", 1),
    ]
    queries = (
        _query(),
        _query(tz="Asia/Kolkata"),  # from 18:30 the day before: holds the prefix
        parse_query({"period": "24h"}, now=datetime(2026, 11, 20, 11, 30, tzinfo=UTC), default_project="development"),
    )
    for query in queries:
        _same_as_raw(runtime.reader(), query)
        for dimension in ("referrers", "browsers"):
            assert stats.breakdown(runtime.reader(), query, dimension) == stats.breakdown(
                runtime.reader(), query, dimension, rollups=False
            )
    exits = {row["value"]: row["sessions"] for row in stats.breakdown(runtime.reader(), _query(), "exit_pages")["rows"]}
    assert exits == {"/p1": 2, "/p2": 3}  # done and brief; quiet, ender and runner, whose exit is 11:05's page now


class _LengthAsHash:
    """A reader whose statements find session parts by the length of the session id, not its hash:
    sessions with ids of the same length collide."""

    def __init__(self, client: Any) -> None:
        self.client, self.rewritten = client, 0

    def query(self, statement: str, **kwargs: Any) -> Any:
        found = "session_hash IN (SELECT sipHash64(session_id)"
        self.rewritten += found in statement
        return self.client.query(statement.replace(found, "length(session_id) IN (SELECT length(session_id)"), **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def test_the_top_pages_of_a_day_still_going_are_read_from_its_prefix_and_an_older_prefix_is_written_again(
    pipeline: Settings,
) -> None:
    """Migration 021: the prefix tier sums its hours' page rows (rollup_prefix_pages); the top pages of a
    period holding the prefix's hours read them instead of an hourly row per page. A prefix written before
    that (no rows, ``rollup_prefix_gens.pages`` 0) is used by no report until the next round writes it."""
    client, writer = runtime.rollup_client(), runtime.writer()
    _running_day(writer)
    rollups.compact_all(client, settle_s=0)
    on = _event(datetime.fromisoformat(f"{DAY} 11:05:00").replace(tzinfo=UTC), 2, session="runner")
    writer.insert_events([event_row(on, RECORD)])
    assert rollups.compact(client, settle_s=60).prefixes == 1  # through 11:00; 11:00 is too fresh
    summed = "SELECT url_path, sum(pageviews) FROM rollup_prefix_pages FINAL GROUP BY url_path ORDER BY url_path"
    hourly = (
        "SELECT url_path, sum(pageviews) FROM rollup_page_hours FINAL WHERE hour < {t:DateTime('UTC')} "
        "GROUP BY url_path ORDER BY url_path"
    )
    through = {"t": datetime.fromisoformat(f"{DAY} 11:00:00")}
    assert client.query(summed).result_rows == client.query(hourly, parameters=through).result_rows != []
    _same_as_raw(runtime.reader(), _query())
    pages = stats.breakdown(runtime.reader(), _query(), "pages")["rows"]
    # What the report reads: 100 more views of the top page in the prefix's rows show.
    top = pages[0]["value"]
    client.command(
        "INSERT INTO rollup_prefix_pages (project_id, through, is_bot, url_path, gen, pageviews, visitors) "
        "SELECT project_id, through, is_bot, url_path, gen + 1, pageviews + 100, visitors "
        "FROM rollup_prefix_pages FINAL WHERE url_path = {u:String} AND is_bot = 0",
        parameters={"u": top},
    )
    rollup_split.CACHE.clear()
    tampered = stats.breakdown(runtime.reader(), _query(), "pages")["rows"]
    assert tampered[0] == pages[0] | {"pageviews": pages[0]["pageviews"] + 100}
    # As migration 021 finds an install: the prefix without its pages (rows gone, flag 0).
    sync = {"mutations_sync": 2}
    client.command("ALTER TABLE rollup_prefix_pages DELETE WHERE 1", settings=sync)
    client.command("ALTER TABLE rollup_prefix_gens UPDATE pages = 0 WHERE 1", settings=sync)
    rollup_split.CACHE.clear()
    assert stats.breakdown(runtime.reader(), _query(), "pages")["rows"] == pages  # hour by hour meanwhile
    _same_as_raw(runtime.reader(), _query())
    assert rollups.compact(client, settle_s=60).prefixes == 1  # written again, with its pages
    assert client.query(summed).result_rows == client.query(hourly, parameters=through).result_rows
    _same_as_raw(runtime.reader(), _query())
    assert stats.breakdown(runtime.reader(), _query(), "pages")["rows"] == pages


def test_a_part_of_another_session_with_the_same_hash_is_not_counted_twice_by_a_breakdown(pipeline: Settings) -> None:
    """The earlier parts of the sessions a breakdown reads one by one are found by ``session_hash``. A part
    of a session the prefix sums with the same hash as one of them is found too: it must be left out."""
    client, writer = runtime.rollup_client(), runtime.writer()
    _running_day(writer)
    rollups.compact_all(client, settle_s=0)
    on = _event(datetime.fromisoformat(f"{DAY} 11:05:00").replace(tzinfo=UTC), 2, session="runner")
    writer.insert_events([event_row(on, RECORD)])
    assert rollups.compact(client, settle_s=60).prefixes == 1
    colliding = _LengthAsHash(runtime.reader())  # quiet and brief (summed) collide with ender (one by one)
    for dimension in ("entry_pages", "exit_pages"):
        rows = stats.breakdown(colliding, _query(), dimension)["rows"]
        assert rows == stats.breakdown(runtime.reader(), _query(), dimension, rollups=False)["rows"]
        assert sum(row["sessions"] for row in rows) == 5
    assert colliding.rewritten == 2


@pytest.mark.parametrize("seed", [1])  # 1-12 kept every report exact (only 1, 6, 7 and 8 drew a cut and a prefix)
def test_random_traffic_redelivery_late_events_and_compaction_rounds_never_change_a_report(
    pipeline: Settings, seed: int
) -> None:
    """A day as it happens, drawn at random (fixed seeds): traffic moving from hour to hour with sessions
    running on, redelivered batches cut anywhere, late events into hours already compacted, and every
    kind of compaction round in between (the minute's round, which makes day prefixes, one that cuts the
    current hour at a random minute while traffic goes on, and a full one). After every step each report
    equals its raw-events form for the day, in a half-hour zone, over three days by day, and for a
    rolling 24 hours (and over three days by day in the half-hour zone)."""
    draw = random.Random(seed)
    client, writer = runtime.rollup_client(), runtime.writer()
    sessions = [(f"r{seed}-{n}", f"v{n % 5}", int(n >= 10)) for n in range(12)]  # the last two are bots

    def event(hour: int, n: int) -> dict[str, Any]:
        session, visitor, bot = draw.choice(sessions)
        at = datetime(2026, 11, 20, hour, tzinfo=UTC) + timedelta(seconds=draw.randrange(3600))
        kind = draw.choice(["pageView", "pageView", "click"])
        referrer = draw.choice(["", "", "a.example", "b.example"])  # a session's is its largest: later ones change it
        if kind == "click" and n % 3 < 2:  # from n, so the draws stay as the seeds' notes say
            kind = ("error", "signup")[n % 3]
        return _event(at, n, session=session, kind=kind) | {
            "anonymous_id": visitor,
            "is_bot": bot,
            "referrer_domain": referrer,
            "props": _PROPS[kind][n % 2],
        }

    def store(events: list[dict[str, Any]]) -> None:
        writer.insert_events([event_row(e, RECORD) for e in events])

    queries = (
        _query(),
        _query(tz="Asia/Kolkata"),
        _query("2026-11-19", "2026-11-21", interval="day"),
        _query("2026-11-19", "2026-11-21", interval="day", tz="Asia/Kolkata"),  # halves of hours
        parse_query({"period": "24h"}, now=datetime(2026, 11, 20, 12, 30, tzinfo=UTC), default_project="development"),
    )
    sent = [event(hour, n) for hour in (6, 7) for n in range(8)]
    store(sent)
    hour, prefixes, cuts = 7, 0, 0
    for _ in range(8):
        choice = draw.choice(["traffic", "traffic", "redeliver", "late", "minute", "cut", "full"])
        if choice == "traffic" or not sent:
            hour = min(hour + draw.randrange(2), 12)
            batch = [event(hour, len(sent) + n) for n in range(draw.randrange(5, 15))]
            sent += batch
            store(batch)
        elif choice == "redeliver":
            start = draw.randrange(len(sent))
            store(sent[start : start + draw.randrange(1, 12)])
        elif choice == "late":
            late = [event(draw.randrange(6, hour + 1), len(sent) + n) for n in range(draw.randrange(1, 4))]
            sent += late
            store(late)
        elif choice == "minute":
            prefixes += rollups.compact(client, settle_s=60).prefixes
        elif choice == "cut":  # the marks so far settle; an insert of this moment marks the hour on time
            time.sleep(0.6)
            at = datetime(2026, 11, 20, hour, tzinfo=UTC)
            _on_time_mark(client, at)
            cut_at = at + timedelta(minutes=draw.randrange(15, 70))  # from 67 minutes on, the whole hour is cut
            cuts += rollups.compact(client, settle_s=0.5, cut_at=cut_at).cuts
            for query in queries:  # read with the cut, before anything below may make it unusable
                _same_as_raw(runtime.reader(), query)
        else:
            rollups.compact_all(client, settle_s=0)
        if draw.random() < 0.5:  # the next round sees this hour settled, the ones after it fresh
            rollups.compact_all(client, settle_s=0)
            store([event(hour, len(sent))] if draw.random() < 0.7 else [])
            prefixes += rollups.compact(client, settle_s=60).prefixes
        for query in queries:
            _same_as_raw(runtime.reader(), query)
            assert stats.breakdown(runtime.reader(), query, "referrers") == stats.breakdown(
                runtime.reader(), query, "referrers", rollups=False
            )
    rollups.compact_all(client, settle_s=0)
    for query in queries:
        _same_as_raw(runtime.reader(), query)
    assert prefixes >= 1, "no day prefix was made: the draw did not exercise the prefix tier"
    assert cuts >= 1, "no hour was cut: the draw did not exercise the cut tier"


def _sessions(query: Any) -> int:
    return int(stats.overview(runtime.reader(), query)["metrics"]["sessions"]["value"])


def _counted_only_with_the_check(monkeypatch: pytest.MonkeyPatch, event: dict[str, Any], why: str) -> None:
    """A split of the day is kept (4 sessions); ``event``, a new session, arrives: with the check replaced by
    ``1`` the kept split misses it (``why``), with the check the report is read again and counts it."""
    query = _query()
    assert _sessions(query) == 4  # the split is read and kept for the next reports
    runtime.writer().insert_events([event_row(event, RECORD)])
    with monkeypatch.context() as unchecked:
        unchecked.setattr(rollup_split, "SPLIT_HOLDS", "1")
        assert _sessions(query) == 4, why
    assert _same_as_raw(runtime.reader(), query)["sessions"] == 5


def test_a_reused_split_that_a_late_event_made_stale_is_read_again_and_the_late_event_counts(
    pipeline: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, writer = runtime.rollup_client(), runtime.writer()
    for hour in (9, 10):
        _store(writer, 6, hour=hour)
    rollups.compact_all(client, settle_s=0)
    late = _event(datetime(2026, 11, 20, 9, 30, tzinfo=UTC), 1, session="late")  # 09 dirty; the kept split: clean
    _counted_only_with_the_check(monkeypatch, late, "without the check the kept split reads 09 from its old rollup")
    assert rollup_split.CACHE.kept(runtime.reader()) > 0
    rollups.compact_all(client, settle_s=0)  # forgets the splits kept here: the next reports read 09 compacted
    assert rollup_split.CACHE.kept(runtime.reader()) == 0
    assert _same_as_raw(runtime.reader(), _query())["sessions"] == 5


def test_a_reused_split_counts_an_hour_that_began_after_it_was_read(
    pipeline: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    _store(runtime.writer(), 6, hour=9)
    rollups.compact_all(runtime.rollup_client(), settle_s=0)
    new = _event(datetime(2026, 11, 20, 11, 5, tzinfo=UTC), 1, session="new")
    _counted_only_with_the_check(monkeypatch, new, "without the check the kept split doesn't know hour 11")


def test_a_day_whose_hours_are_compacted_but_not_yet_the_day_reads_its_hourly_rows(pipeline: Settings) -> None:
    # Every hour clean and none dirty, but the day not clean: the split lists the day's hours as clean
    # hours of an open day, and the reports' parts for them must stay in (rollups.split.when_open).
    client, writer = runtime.rollup_client(), runtime.writer()
    for hour in (9, 10):
        _store(writer, 6, hour=hour)
    rollups.compact_all(client, settle_s=0)
    late = _event(datetime(2026, 11, 20, 9, 30, tzinfo=UTC), 1, session="late")
    writer.insert_events([event_row(late, RECORD)])
    common = {"settle_s": 0, "lease_s": rollups.LEASE_S, "replica_lag_s": 0.0}
    assert rollups._round(client, rollups.HOUR_TIER, budget=rollups.ROUND_ROWS, **common)[0] == 1  # not the day
    after = rollups.backlog(client)
    assert (after.hours, after.clean_days) == (0, 0)
    metrics = _same_as_raw(runtime.reader(), _query())
    assert (metrics["sessions"], metrics["pageviews"]) == (5, 13)
    assert stats.breakdown(runtime.reader(), _query(), "entry_pages")["rows"]  # sessions of the open day


def test_the_prefix_arrays_passed_as_parameters_are_those_the_statement_derives_itself(clickhouse: Any) -> None:
    """A split read before the overview or a session breakdown passes its prefix arrays computed in Python;
    read in the statement, SQL derives them (PREFIX_NAMES). Random splits and periods over four days: both
    give the same arrays."""
    rng = random.Random(20)
    first = int(datetime(2026, 11, 18, tzinfo=UTC).timestamp())
    hours = list(range(first, first + 4 * 86_400, 3600))
    days = [datetime(2026, 11, 18 + n, tzinfo=UTC).date() for n in range(4)]
    given = PREFIX_NAMES.replace(f"{PREFIXES} AS all_prefixes", "{all:Array(DateTime('UTC'))} AS all_prefixes")
    derived = ", ".join(f"arrayMap(h -> toUnixTimestamp(h), {name}) AS seconds_{name}" for name in PREFIX_PARTS)
    statement = (
        "WITH {clean_days:Array(Date)} AS clean_days, {open:Array(DateTime('UTC'))} AS open_day_hours, "
        f"{{dirty:Array(DateTime('UTC'))}} AS dirty_hours, {given} SELECT {derived}"
    )
    held = 0
    for _ in range(60):
        marked = sorted(rng.sample(hours, rng.randint(0, 60)))
        split = {
            "clean_days": sorted(rng.sample(days, rng.randint(0, 2))),
            "open_day_hours": [h for h in marked if rng.random() < 0.6],
            "dirty_hours": [h for h in marked if rng.random() < 0.3],
            "all_prefixes": sorted(rng.sample(hours, rng.randint(0, 4))),
        }
        start = rng.choice(hours) + rng.choice((0, 1800))  # a period the breakdowns' prefix may lie in or not
        params = {
            "partial_days": sorted(rng.sample(days, rng.randint(0, 2))),
            "whole_days": sorted(rng.sample(days, rng.randint(0, 3))),
            "start": start * 1000,
            "end": (start + rng.randint(1, 3 * 86_400)) * 1000,
        }
        result = clickhouse.query(
            statement,
            parameters=params
            | {
                "clean_days": split["clean_days"],
                "open": [datetime.fromtimestamp(h, UTC) for h in split["open_day_hours"]],
                "dirty": [datetime.fromtimestamp(h, UTC) for h in split["dirty_hours"]],
                "all": [datetime.fromtimestamp(h, UTC) for h in split["all_prefixes"]],
            },
        )
        expected = dict(zip(PREFIX_PARTS, (list(v) for v in result.result_rows[0]), strict=True))
        assert rollup_split.prefix_parts(split, params) == expected
        held += bool(expected["dims_hours"])
    assert held >= 5, "too few draws gave the session breakdowns a prefix"


def test_a_split_too_large_for_parameters_is_read_in_the_statement_with_the_same_numbers(
    pipeline: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, writer = runtime.rollup_client(), runtime.writer()
    for hour in (9, 10):
        _store(writer, 6, hour=hour)
    rollups.compact(client, settle_s=0)
    _store(writer, 3, hour=11)  # a dirty hour beside clean ones
    assert rollups.compact(client, settle_s=60).prefixes == 1  # the day's prefix through 11:00, read too
    inline: list[str] = []
    in_statement = rollup_split.inline
    monkeypatch.setattr(rollup_split, "MAX_PARAMETER_HOURS", 0)
    monkeypatch.setattr(rollup_split, "inline", lambda statement: inline.append(statement) or in_statement(statement))
    metrics = _same_as_raw(runtime.reader(), _query())
    assert (metrics["sessions"], metrics["pageviews"]) == (4, 15)
    assert inline, "the reports did not read their split in the statement"


def test_days_compacted_before_their_whole_day_rows_existed_read_exact_until_compaction_writes_them(
    pipeline: Settings,
) -> None:
    from chalicelib.storage.migrations import load_migrations
    from trackflow.dev import MIGRATIONS_DIR

    client = runtime.rollup_client()
    for day in ("2026-11-19", "2026-11-20"):
        for hour in (9, 10):
            _store(runtime.writer(), 4, hour=hour, day=day)
    rollups.compact_all(client, settle_s=0)
    query = _query("2026-11-19", "2026-11-20", interval="day")
    metrics = _same_as_raw(runtime.reader(), query)
    for table in ("rollup_session_day_visitors", "rollup_traffic_days"):  # as an install compacted under 011 has them
        client.command(f"TRUNCATE TABLE {table}")
    (upgrade_012,) = [
        m for m in load_migrations(MIGRATIONS_DIR, database=pipeline.clickhouse.database) if m.version == 12
    ]
    client.command(upgrade_012.statements[-1])  # its marks
    assert rollups.backlog(client).hours == 2  # one hour of each day
    assert _same_as_raw(runtime.reader(), query) == metrics
    done = rollups.compact_all(client, settle_s=0)
    assert (done.hours, done.days) == (2, 2)
    assert client.query("SELECT count() FROM rollup_traffic_days FINAL WHERE pageviews > 0").result_rows == [(2,)]
    assert _same_as_raw(runtime.reader(), query) == metrics


# The cut tier: an hour still changing compacted up to a cut. The events are of a past day, so a test
# marks the hour "on time" itself (ingest's marks of old events are late) and sets the cut's "now".
TEN = datetime(2026, 11, 20, 10, tzinfo=UTC)
CUT_AT = TEN + timedelta(minutes=40)  # the cut: 10:40 less the late margin and the copy margin, 10:33
CUT = TEN + timedelta(minutes=33)


SETTLE_S = 2


def _traffic_goes_on(client: Any) -> None:
    """The marks so far settle, then an insert of events of this moment marks 10:00 again."""
    time.sleep(SETTLE_S + 0.1)
    _on_time_mark(client)


def _on_time_mark(client: Any, hour: datetime = TEN) -> None:
    """Mark ``hour`` as an insert of events of this moment does (by the real clock: not late)."""
    rollups.mark_changed(client, {("development", hour): 0}, earliest={("development", hour): datetime.now(UTC)})


def _cut(client: Any) -> rollups.CompactResult:
    """One round of compaction, as the minute's schedule runs it: 10:00 has changed too recently to settle."""
    return rollups.compact(client, settle_s=SETTLE_S, cut_at=CUT_AT)


def _cut_queries() -> list[Any]:
    rolling = parse_query({"period": "24h"}, now=TEN + timedelta(minutes=50), default_project="development")
    early = replace(_query(), end=TEN + timedelta(minutes=20))  # ends before the cut: reads the hour raw
    return [_query(), _query(tz="Asia/Kolkata"), _query(interval="hour"), rolling, early]


def _hour_of_traffic(writer: EventWriter) -> list[dict[str, Any]]:
    """Sessions over 09:00 to 10:59, one event every 40 s, some running from 09 into 10."""
    events = [_event(TEN - timedelta(hours=1) + timedelta(seconds=40 * n), n) for n in range(180)]
    events = [e | {"session_id": f"s{n % 7}", "anonymous_id": f"v{n % 7 % 4}"} for n, e in enumerate(events)]
    writer.insert_events([event_row(e, RECORD) for e in events])
    return events


def test_an_hour_still_changing_is_compacted_up_to_a_cut_and_reports_read_only_the_events_after_it_raw(
    pipeline: Settings,
) -> None:
    client, writer = runtime.rollup_client(), runtime.writer()
    _hour_of_traffic(writer)
    _traffic_goes_on(client)
    assert rollups.backlog(client, settle_s=SETTLE_S).raw_tail_s == 3600  # 10:00 changing: all of it raw
    done = _cut(client)
    assert (done.hours, done.cuts) == (1, 1)  # 09 settled; 10 is still changing: cut
    assert rollups.backlog(client, settle_s=SETTLE_S).raw_tail_s == 27 * 60  # from 10:33
    gens = client.query("SELECT through, gen FROM rollup_cut_gens WHERE state = 'done'").result_rows
    assert [g[0].replace(tzinfo=UTC) for g in gens] == [CUT]
    cut_rows = client.query("SELECT sum(pageviews) FROM rollup_traffic_cuts").result_rows[0][0]
    assert cut_rows == 50  # 10:00:00 to 10:32:40, one every 40 s
    expected = [_same_as_raw(runtime.reader(), query) for query in _cut_queries()]
    assert expected[0]["pageviews"] == 180
    _on_time_mark(client)
    assert _cut(client).cuts == 0  # no cut 5 minutes later than the last one yet
    # The reports read the cut's rows (and the events before the cut only there): a row added to them shows.
    client.insert(
        "rollup_traffic_cuts",
        [["development", TEN, gens[0][1], 0, 100, 100]],
        column_names=("project_id", "hour", "gen", "is_bot", "pageviews", "events"),
    )
    hourly = stats.timeseries(runtime.reader(), _query(interval="hour"))["points"]
    assert sum(point["pageviews"] for point in hourly) == 280
    early = stats.timeseries(runtime.reader(), _cut_queries()[-1])["points"]  # ends before the cut: none of it
    assert sum(point["pageviews"] for point in early) == 120  # 09:00 to 10:19:20, raw


def test_a_cut_of_the_hour_india_s_day_starts_inside_of_is_not_used_by_its_days_timeseries(
    pipeline: Settings,
) -> None:
    """18:00 UTC holds Asia/Kolkata's midnight (18:30). Its hourly rows, and a cut's rows, are of the hour:
    they would land whole in one day bucket. The timeseries by day reads that hour raw, by the minute."""
    client, writer = runtime.rollup_client(), runtime.writer()
    hour = datetime.fromisoformat(f"{DAY} 18:00:00").replace(tzinfo=UTC)
    events = [_event(hour + timedelta(minutes=m), n) for n, m in enumerate((10, 20, 31, 40))]
    writer.insert_events([event_row(e, RECORD) for e in events])
    time.sleep(SETTLE_S + 0.1)
    _on_time_mark(client, hour)
    assert rollups.compact(client, settle_s=SETTLE_S, cut_at=hour + timedelta(minutes=40)).cuts == 1  # at 18:33
    cut_rows = client.query("SELECT sum(pageviews) FROM rollup_traffic_cuts").result_rows[0][0]
    assert cut_rows == 3  # 18:10, 18:20 and 18:31: the last one is the next day's in Kolkata
    kolkata = _query(DAY, "2026-11-21", tz="Asia/Kolkata", interval="day")
    points = stats.timeseries(runtime.reader(), kolkata)
    assert points == stats.timeseries(runtime.reader(), kolkata, rollups=False)
    assert [p["pageviews"] for p in points["points"] if p["pageviews"]] == [2, 2]
    rollups.compact_all(client, settle_s=0)  # the hour compacted whole: its hourly rows aren't used either
    assert stats.timeseries(runtime.reader(), kolkata) == points


def test_a_timeseries_by_day_in_india_reads_the_hour_its_day_starts_in_from_its_halves(pipeline: Settings) -> None:
    """Migration 020: a day of Asia/Kolkata starts at 18:30 UTC. Once clean, 18:00 comes from its halves
    (rollup_traffic_halves), the first half the 20th's, the second the 21st's: not raw by the minute."""
    client, writer = runtime.rollup_client(), runtime.writer()
    at = datetime.fromisoformat(f"{DAY} 00:00:00").replace(tzinfo=UTC)
    events = [_event(at + timedelta(minutes=37 * n), n) | {"anonymous_id": f"v{n % 7}"} for n in range(38)]
    writer.insert_events([event_row(e, RECORD) for e in events])  # 00:00 to 22:49, visitors v0-v6
    rollups.compact_all(client, settle_s=0)
    kolkata = _query("2026-11-20", "2026-11-21", tz="Asia/Kolkata", interval="day")
    points = stats.timeseries(runtime.reader(), kolkata)
    assert points == stats.timeseries(runtime.reader(), kolkata, rollups=False)
    assert [(p["pageviews"], p["visitors"]) for p in points["points"]] == [(30, 7), (8, 7)]
    # The halves are what the report reads: the second one rewritten with 100 more page views moves them.
    client.command(
        "INSERT INTO rollup_traffic_halves (project_id, hour, half, is_bot, gen, pageviews, events, visitors) "
        "SELECT project_id, hour, half, is_bot, gen + 1, pageviews + 100, events, visitors "
        "FROM rollup_traffic_halves FINAL WHERE hour = {h:DateTime('UTC')} AND half = 1",
        parameters={"h": datetime.fromisoformat(f"{DAY} 18:00:00")},
    )
    rollup_split.CACHE.clear()
    assert [p["pageviews"] for p in stats.timeseries(runtime.reader(), kolkata)["points"]] == [30, 108]


def test_in_nepal_the_quarter_hour_its_day_starts_at_is_read_raw_and_every_report_stays_exact(
    pipeline: Settings,
) -> None:
    """Asia/Kathmandu is 5:45 ahead: its day starts at 18:15 UTC, inside an hour and inside that hour's
    halves (migration 020), so 18:00 is read raw by the minute; the reports over Nepal's days, by day and
    by hour, equal raw events before and after compaction."""
    client, writer = runtime.rollup_client(), runtime.writer()
    at = datetime.fromisoformat(f"{DAY} 17:00:00").replace(tzinfo=UTC)
    minutes = (5, 50, 70, 74, 76, 80, 105, 130)  # 17:05 ... 18:14 | 18:16 ... 19:10
    events = [
        _event(at + timedelta(minutes=m), n, session=f"q{n // 2}") | {"anonymous_id": f"v{n % 3}"}
        for n, m in enumerate(minutes)
    ]  # sessions of two events each: 18:10-18:14 the 20th's, 18:16-18:20 the 21st's
    writer.insert_events([event_row(e, RECORD) for e in events])
    nepal = [
        _query("2026-11-20", "2026-11-21", tz="Asia/Kathmandu", interval="day"),
        _query("2026-11-20", "2026-11-21", tz="Asia/Kathmandu", interval="hour"),
        _query("2026-11-21", "2026-11-21", tz="Asia/Kathmandu"),
    ]
    before = [_same_as_raw(runtime.reader(), query) for query in nepal]
    rollups.compact_all(client, settle_s=0)
    assert [_same_as_raw(runtime.reader(), query) for query in nepal] == before
    points = stats.timeseries(runtime.reader(), nepal[0])["points"]
    assert [p["pageviews"] for p in points] == [4, 4]  # 18:14 is the 20th's in Nepal, 18:16 the 21st's
    # 18:00's halves and hourly rows are not what the report reads: 100 more page views in each change nothing.
    for table, key in (("rollup_traffic_halves", "half, "), ("rollup_traffic_hours", "")):
        client.command(
            f"INSERT INTO {table} (project_id, hour, {key}is_bot, gen, pageviews, events, visitors) "
            f"SELECT project_id, hour, {key}is_bot, gen + 1, pageviews + 100, events, visitors "
            f"FROM {table} FINAL WHERE hour = {{h:DateTime('UTC')}}",
            parameters={"h": datetime.fromisoformat(f"{DAY} 18:00:00")},
        )
    rollup_split.CACHE.clear()
    assert stats.timeseries(runtime.reader(), nepal[0])["points"] == points
    assert (before[2]["sessions"], before[2]["pageviews"]) == (2, 4)


def test_a_session_running_past_the_prefix_with_its_hour_all_before_the_cut_takes_its_earlier_part_back(
    pipeline: Settings,
) -> None:
    """The overview looks up the earlier parts of the sessions with a part from the prefix's end on. Of the
    cut hour it takes those from the cut's rows and the events after the cut: a session whose events of
    that hour all came before the cut is found in the rows, and counts once."""
    client, writer = runtime.rollup_client(), runtime.writer()
    _hour_of_traffic(writer)
    gone = [_event(TEN + timedelta(minutes=m), 0, session="gone") for m in (-10, 10)]  # 09:50 and 10:10
    writer.insert_events([event_row(e | {"anonymous_id": "v9"}, RECORD) for e in gone])
    _traffic_goes_on(client)
    done = _cut(client)
    assert (done.hours, done.prefixes, done.cuts) == (1, 1, 1)  # 09 settled, the day's prefix through 10:00, cut
    metrics = _same_as_raw(runtime.reader(), _query())
    assert (metrics["sessions"], metrics["visitors"]) == (8, 5)
    for query in _cut_queries()[1:]:
        _same_as_raw(runtime.reader(), query)


def test_a_cut_too_old_for_reports_holds_no_new_cut_back(pipeline: Settings) -> None:
    """Reports stop using a cut 12 hours after it was written (its rows expire); the cut tier makes a new
    one even where the old one reached as far: a benchmark rerun on yesterday's data met that."""
    client, writer = runtime.rollup_client(), runtime.writer()
    _hour_of_traffic(writer)
    _traffic_goes_on(client)
    assert _cut(client).cuts == 1
    _traffic_goes_on(client)
    assert _cut(client).cuts == 0  # the same cut again: not due
    client.command(
        "ALTER TABLE rollup_cut_gens UPDATE recorded_at = recorded_at - toIntervalHour(13) WHERE 1 "
        "SETTINGS mutations_sync = 2"
    )
    assert rollups.backlog(client, settle_s=SETTLE_S).raw_tail_s == 3600  # the reports read 10:00 raw whole
    _traffic_goes_on(client)
    assert _cut(client).cuts == 1
    assert rollups.backlog(client, settle_s=SETTLE_S).raw_tail_s == 27 * 60  # from 10:33 again
    for query in _cut_queries():
        _same_as_raw(runtime.reader(), query)


def test_a_late_insert_before_the_cut_makes_it_unusable_until_a_round_covers_it_and_a_kept_split_sees_that(
    pipeline: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, writer = runtime.rollup_client(), runtime.writer()
    _hour_of_traffic(writer)
    _traffic_goes_on(client)
    assert _cut(client).cuts == 1
    query = _query()
    assert _sessions(query) == 7  # the split (with the cut) is read and kept
    late = _event(TEN + timedelta(minutes=10), 1, session="late")  # before the cut, stored after it was made
    writer.insert_events([event_row(late, RECORD)])
    with monkeypatch.context() as unchecked:
        unchecked.setattr(rollup_split, "SPLIT_HOLDS", "1")
        assert _sessions(query) == 7, "without the check the kept split reads 10:00 to 10:33 from the old cut"
    # Read again, the split leaves the cut out at once (not after failing its check until it gives up).
    monkeypatch.setattr(rollup_split, "inline", lambda statement: pytest.fail("the split kept the stale cut"))
    assert _same_as_raw(runtime.reader(), query)["sessions"] == 8
    assert all(_same_as_raw(runtime.reader(), q) for q in _cut_queries())
    monkeypatch.undo()
    _traffic_goes_on(client)
    assert _cut(client).cuts == 1  # the late mark is covered now: cut again, the late event in it
    assert client.query("SELECT count() FROM rollup_session_cuts WHERE session_id = 'late'").result_rows == [(1,)]
    assert _same_as_raw(runtime.reader(), query)["sessions"] == 8
    rollups.compact_all(client, settle_s=0)  # settled at last: the hour tier takes 10 whole
    assert _same_as_raw(runtime.reader(), query)["sessions"] == 8


@pytest.mark.parametrize("stored_last", ["copy before the cut", "copy after the cut"])
def test_an_event_resent_with_its_copies_on_both_sides_of_the_cut_counts_once(
    pipeline: Settings, stored_last: str
) -> None:
    client, writer = runtime.rollup_client(), runtime.writer()
    _hour_of_traffic(writer)
    before = _event(CUT - timedelta(milliseconds=1), 1, session="resent")
    after = before | {"timestamp": before["timestamp"] + 3, "received_at": before["received_at"] + 900}
    for copy in (after, before) if stored_last == "copy before the cut" else (before, after):
        writer.insert_events([event_row(copy, RECORD)])  # a part each
    _traffic_goes_on(client)
    assert _cut(client).cuts == 1
    in_cut = client.query("SELECT count() FROM rollup_session_cuts WHERE session_id = 'resent'").result_rows[0][0]
    assert in_cut == int(stored_last == "copy before the cut")  # FINAL keeps the copy stored last
    for query in _cut_queries():
        _same_as_raw(runtime.reader(), query)
    assert _same_as_raw(runtime.reader(), _query())["pageviews"] == 181


def test_ingest_marks_an_insert_of_fresh_events_on_time_and_one_bringing_older_events_late(pipeline: Settings) -> None:
    # What the writer sends with each insert: the earliest event per hour, so the cut tier can tell a
    # redelivery or a client back online (events minutes old) from steady traffic.
    client, writer = runtime.rollup_client(), runtime.writer()
    now = datetime.now(UTC).replace(microsecond=0)
    hour = now.replace(minute=0, second=0)
    fresh = _event(max(hour, now - timedelta(seconds=20)), 1, session="fresh")
    writer.insert_events([event_row(fresh, RECORD)])
    marks = "SELECT max(late_change) FROM rollup_hour_changes WHERE hour = {h:DateTime('UTC')}"
    assert client.query(marks, parameters={"h": hour}).result_rows[0][0].year == 1970  # on time: no late mark
    old = _event(max(hour, now - timedelta(minutes=10)), 2, session="old")
    if old["timestamp"] > fresh["timestamp"] - 150_000:  # the hour began minutes ago: an older hour instead
        old = _event(hour - timedelta(minutes=30), 2, session="old")
    writer.insert_events([event_row(old, RECORD)])
    late_hour = datetime.fromtimestamp(old["timestamp"] // 3_600_000 * 3600, UTC)
    assert client.query(marks, parameters={"h": late_hour}).result_rows[0][0].year == now.year  # late
