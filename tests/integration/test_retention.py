"""Retention on the real engine: expired days leave every table and every report, the rest stays exact.

The data: ten days of generated traffic for two projects, compacted into the
rollups, and dead letters of both projects (and an unreadable one) on every
day. ``shop`` keeps 3 days (its own setting), ``blog`` the default (5 here).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from chalicelib.projects import named_project
from chalicelib.rollups.compaction import compact_all
from chalicelib.settings import load_settings
from chalicelib.stats import reports as stats
from chalicelib.stats.params import parse_query
from chalicelib.storage.clickhouse import connect
from chalicelib.storage.retention import TABLE_DAYS, expire, first_kept_day
from tests.conftest import make_env
from trackflow.load import Traffic, sites, table_writer, to_table

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)
TODAY = NOW.date()


def _dead_letters(writer: Any, project: str, day: date) -> list[tuple[Any, ...]]:
    value = orjson.dumps({"v": 2, "shared": {"project_id": project}, "events": [{"type": "x"}]}).decode()
    failed = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=3)
    return [(failed, "test", "t", 0, hash((project, day)) % 10_000, 0, "", value)]


@pytest.fixture
def stored(data_dir: Path) -> Any:
    no_broker: Any = SimpleNamespace(bootstrap_servers="127.0.0.1:1")
    settings = load_settings(make_env(no_broker, data_dir))
    writer = table_writer(settings)
    traffic = Traffic(sites(["shop", "blog"]), end_ms=int(NOW.timestamp() * 1000), days=10)
    to_table(traffic.events(8_000), writer, batch_size=2_000, progress=lambda _: None)
    letters = [
        row for d in range(10) for p in ("shop", "blog") for row in _dead_letters(writer, p, TODAY - timedelta(d))
    ]
    letters.append(
        (datetime.combine(TODAY - timedelta(9), datetime.min.time(), UTC), "unreadable", "t", 0, 1, -1, "", "\x00")
    )
    writer.insert_dead_letters(letters)
    client = connect(settings.clickhouse, database=settings.clickhouse.database)
    compact_all(client, settle_s=0)
    # Compaction keeps a prefix of the newest day only, and cuts only of hours still changing; retention must
    # find them on any day.
    ten_days = (
        "(SELECT arrayJoin(['shop', 'blog']) AS p, toDateTime({today:Date}, 'UTC') - toIntervalDay(arrayJoin(range(10))) "
        "+ toIntervalHour(5) AS t)"
    )
    prefix_rows = {
        "rollup_prefix_gens": ("gen, state", "1, 'done'"),
        "rollup_prefix_starts": ("start_hour, is_bot, gen", "toStartOfDay(t), 0, 1"),
        "rollup_prefix_dims": ("dimension, end_slot, value, gen", "'country', toStartOfDay(t), 'NZ', 1"),
        "rollup_prefix_pages": ("url_path, gen", "'/', 1"),
    }
    for table, (columns, values) in prefix_rows.items():
        client.command(
            f"INSERT INTO {table} (project_id, through, {columns}) SELECT p, t, {values} FROM {ten_days}",
            parameters={"today": TODAY},
        )
    for table in ("rollup_cut_gens", "rollup_session_cuts", "rollup_traffic_cuts", "rollup_page_cuts"):
        columns, values = ("gen, state", "1, 'done'") if table.endswith("gens") else ("gen", "1")
        client.command(
            f"INSERT INTO {table} (project_id, hour, {columns}) SELECT p, t, {values} FROM {ten_days}",
            parameters={"today": TODAY},
        )
    return client


def _days_of(client: Any, table: str, project: str) -> set[date]:
    day, owner = TABLE_DAYS[table]
    rows = client.query(f"SELECT DISTINCT {day} FROM {table} WHERE {owner} = {{p:String}}", parameters={"p": project})
    return {r[0] for r in rows.result_rows}


def test_expired_days_leave_every_table_and_the_kept_ones_stay_whole(stored: Any) -> None:
    client = stored
    projects = [replace(named_project("shop"), retention_days=3)]
    before = {table: {p: _days_of(client, table, p) for p in ("shop", "blog")} for table in TABLE_DAYS}
    done = expire(client, projects, default_days=5, now=NOW, wait=True)

    firsts = {"shop": first_kept_day(TODAY, 3), "blog": first_kept_day(TODAY, 5)}
    assert firsts == {"shop": date(2026, 11, 8), "blog": date(2026, 11, 6)}
    assert set(done.rows) == set(TABLE_DAYS)  # every table held something expired
    for table in TABLE_DAYS:
        for project, first in firsts.items():
            kept = _days_of(client, table, project)
            assert kept == {d for d in before[table][project] if d >= first}, (table, project)
            assert kept, (table, project)
    unreadable = client.query("SELECT count() FROM dead_letters WHERE reason = 'unreadable'").result_rows[0][0]
    assert unreadable == 0  # no project: the default's five days

    again = expire(client, projects, default_days=5, now=NOW, wait=True)
    assert again.rows == {}  # a second run finds nothing


def test_reports_after_expiry_count_only_what_remains_and_rollups_agree_with_raw_events(stored: Any) -> None:
    client = stored
    expire(client, [replace(named_project("shop"), retention_days=3)], default_days=5, now=NOW, wait=True)
    query = parse_query({"project": "shop", "from": "2026-11-01", "to": "2026-11-10"}, now=NOW)
    kept_events = client.query(
        "SELECT countIf(type = 'pageView') FROM events FINAL WHERE project_id = 'shop' AND is_bot = 0"
    ).result_rows[0][0]
    series = stats.timeseries(client, query)
    assert sum(point["pageviews"] for point in series["points"]) == kept_events > 0
    assert all(point["pageviews"] == 0 for point in series["points"] if point["time"] < "2026-11-08")
    assert any(point["pageviews"] for point in series["points"] if point["time"] >= "2026-11-08")
    assert stats.overview(client, query) == stats.overview(client, query, rollups=False)
    for dimension in ("pages", "entry_pages", "referrers"):
        assert stats.breakdown(client, query, dimension) == stats.breakdown(client, query, dimension, rollups=False)
