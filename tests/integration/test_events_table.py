"""The events table sorted by the hour inside the day (migration 010): what an upgrade keeps, what
collapses, and what a read of one hour touches. On the embedded engine (chDB)."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chalicelib.ingest import event_row
from chalicelib.rollups import compaction as rollups
from chalicelib.settings import Settings
from chalicelib.stats import reports as stats
from chalicelib.storage.clickhouse import EVENT_COLUMNS, connect
from tests.integration.test_rollups import RECORD, _event, _query, _same_as_raw, upgrade

pytestmark = pytest.mark.integration

AT = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def _rows(events: list[dict[str, Any]]) -> list[Any]:
    return [event_row(event, RECORD) for event in events]


def test_upgrading_keeps_every_event_and_its_copies_collapse_and_compaction_redoes_every_hour(
    settings: Settings,
) -> None:
    events = [_event(AT + timedelta(minutes=7 * n), n) for n in range(30)]  # 10:00 to 13:23
    resent = events[:5]  # the same events again, in another insert
    before: dict[str, Any] = {}

    def store(client: Any) -> None:  # under 009 (today's compaction needs later tables: raw reports only)
        client.insert("events", _rows(events), column_names=EVENT_COLUMNS)
        client.insert("events", _rows(resent), column_names=EVENT_COLUMNS)
        rollups.mark_changed(client, {("development", AT + timedelta(hours=h)): 0 for h in range(4)})
        metrics = stats.overview(client, _query(), rollups=False)["metrics"]
        before.update({name: value["value"] for name, value in metrics.items()})
        assert before["pageviews"] == 30

    client = upgrade(settings, store, before=10)
    database = settings.clickhouse.database
    server = connect(settings.clickhouse)

    ddl = server.query(f"SHOW CREATE TABLE {database}.events").result_rows[0][0]
    assert "ORDER BY (project_id, toDate(timestamp), type, toStartOfMinute(client_ts), event_id)" in ddl
    assert "INDEX timestamp_minmax timestamp TYPE minmax GRANULARITY 1" in ddl
    assert "browser" in ddl and "visitor_id" in ddl  # the columns later migrations added, aliases too
    tables = {row[0] for row in server.query(f"SHOW TABLES FROM {database}").result_rows}
    assert not tables & {"events_by_day", "events_by_hour", "events_by_minute"}
    # Every event was copied, and FINAL keeps one of each.
    assert server.query(f"SELECT count() FROM {database}.events FINAL").result_rows == [(30,)]
    # Every hour is to be compacted again, and the reports equal raw before and after.
    assert rollups.backlog(client).hours == 4
    assert _same_as_raw(client, _query()) == before
    rollups.compact_all(client, settle_s=0)
    assert rollups.backlog(client).hours == 0
    assert _same_as_raw(client, _query()) == before


@pytest.mark.parametrize("stored_last", ["later copy", "earlier copy"])
def test_an_event_resent_with_its_time_corrected_across_an_hour_boundary_counts_once_in_the_hour_final_keeps(
    clickhouse: Any, pipeline: Settings, stored_last: str
) -> None:
    # The tracker resends an event with a new sent_at: collect corrects the time again, and the network
    # delay differed, so the copies' timestamps straddle 11:00. Its client time and id are the same.
    # FINAL keeps the copy stored last. Each copy is a part (and a granule) of its own, so a read of
    # one hour whose exact bound reached the timestamp index would skip the other copy's granule and
    # count the event in its hour as well (chalicelib.rollups.sql.FINAL_SETTINGS).
    eleven = AT.replace(hour=11)
    first = _event(eleven - timedelta(milliseconds=1), 1)
    again = first | {"timestamp": first["timestamp"] + 3, "received_at": first["received_at"] + 900}
    for copy in (first, again) if stored_last == "later copy" else (again, first):
        clickhouse.insert("events", _rows([copy]), column_names=EVENT_COLUMNS)
    assert clickhouse.query("SELECT count() FROM events FINAL").result_rows == [(1,)]
    kept = clickhouse.query("SELECT toStartOfHour(timestamp) FROM events FINAL").result_rows[0][0]
    assert kept.replace(tzinfo=UTC) == (eleven if stored_last == "later copy" else AT)

    def counted_once() -> None:
        assert _same_as_raw(clickhouse, _query())["pageviews"] == 1
        for hour in (AT, eleven):
            one_hour = replace(_query(), start=hour, end=hour + timedelta(hours=1))
            assert _same_as_raw(clickhouse, one_hour)["pageviews"] == int(hour == kept.replace(tzinfo=UTC))
        hourly = stats.timeseries(clickhouse, _query(interval="hour"))
        assert sum(point["pageviews"] for point in hourly["points"]) == 1

    rollups.mark_changed(clickhouse, {("development", AT): 0, ("development", eleven): 0})
    counted_once()  # both hours raw
    rollups.compact_all(clickhouse, settle_s=0)
    counted_once()
    for dirty in (AT, eleven):  # one hour compacted, the other changed again: read raw beside the rollup
        rollups.mark_changed(clickhouse, {("development", dirty): 0})
        counted_once()
        rollups.compact_all(clickhouse, settle_s=0)


def test_reading_the_dirty_hour_of_a_day_reads_only_that_hours_granules(clickhouse: Any) -> None:
    # 96,000 events spread over one day, one every 0.9 s: 12 granules of 8,192 rows.
    at = "toDateTime64('2026-11-20 00:00:00', 3, 'UTC') + toIntervalMillisecond(number * 900)"
    clickhouse.command(
        "INSERT INTO events (project_id, timestamp, client_ts, received_at, type, event_id, session_id, "
        f"anonymous_id, url_path) SELECT 'development', {at}, {at}, {at}, 'pageView', generateUUIDv4(number), "
        "toString(intDiv(number, 5)), toString(intDiv(number, 10)), '/' FROM numbers(96000)"
    )
    dirty = "[toDateTime('2026-11-20 10:00:00', 'UTC')]"
    from chalicelib.rollups.sql import NO_CUTS, dirty_prewhere

    plan = "\n".join(
        row[0]
        for row in clickhouse.query(
            f"EXPLAIN indexes = 1 WITH {dirty} AS dirty_hours, {NO_CUTS} SELECT count() FROM events FINAL "
            f"PREWHERE {dirty_prewhere('dirty_hours')} WHERE project_id = 'development'"
        ).result_rows
    )
    skip = plan[plan.index("timestamp_minmax") :]
    read, total = map(int, re.search(r"Granules: (\d+)/(\d+)", skip).groups())  # type: ignore[union-attr]
    assert total >= 12 and read <= 2, plan  # 10:00 (and 5 minutes either side), not the whole day
    counted = clickhouse.query(
        f"WITH {dirty} AS dirty_hours, {NO_CUTS} SELECT count() FROM events FINAL PREWHERE {dirty_prewhere('dirty_hours')} "
        "WHERE project_id = 'development' AND toStartOfHour(timestamp) = dirty_hours[1]"
    ).result_rows
    assert counted == [(4000,)]  # 3,600 s / 0.9 s
