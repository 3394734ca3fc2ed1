"""The reports' SQL: which hours a timeseries by day reads raw so that each event lands in its bucket; the
session breakdowns asked together in one statement."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from chalicelib.stats.params import StatsQuery, parse_query
from chalicelib.stats.sql import Sql, _bucket_edges, _half_edges, session_breakdowns

NOW = datetime(2026, 11, 20, 12, 30, tzinfo=UTC)


def _days(tz: str, interval: str = "day") -> StatsQuery:
    params = {"from": "2026-11-17", "to": "2026-11-19", "tz": tz, "interval": interval}
    return parse_query(params, now=NOW, default_project="development")


@pytest.mark.parametrize("tz", ["UTC", "Europe/Berlin", "America/New_York"])
def test_a_zone_a_whole_number_of_hours_from_utc_starts_its_buckets_on_whole_hours(tz: str) -> None:
    assert _bucket_edges(_days(tz)) == []


def test_india_starts_its_buckets_at_half_past_18_utc_inside_the_period_only() -> None:
    # 2026-11-17 to 19 in Asia/Kolkata: from 16 Nov 18:30 UTC to 19 Nov 18:30; the midnights inside it.
    assert _bucket_edges(_days("Asia/Kolkata")) == [datetime(2026, 11, d, 18, tzinfo=UTC) for d in (17, 18)]


def test_nepal_at_a_quarter_hour_and_hourly_buckets_anywhere() -> None:
    assert _bucket_edges(_days("Asia/Kathmandu")) == [datetime(2026, 11, d, 18, tzinfo=UTC) for d in (17, 18)]
    assert _bucket_edges(_days("Asia/Kolkata", interval="hour")) == []


def test_the_hours_a_day_starts_in_the_middle_of_are_india_s_not_nepal_s() -> None:
    assert _half_edges(_days("Asia/Kolkata")) == _bucket_edges(_days("Asia/Kolkata"))
    assert _half_edges(_days("Asia/Kathmandu")) == []  # 18:15 UTC: read raw
    assert _half_edges(_days("America/New_York")) == []


@pytest.mark.parametrize("rollups", [True, False])
def test_session_breakdowns_asked_together_pair_each_column_with_its_name_and_rank_each_on_its_own(
    rollups: bool,
) -> None:
    query = _days("UTC")
    sql = Sql().bind(query)
    statement = session_breakdowns(sql, query, ["referrer_domain", "country"], rollups=rollups)
    assert (
        statement.count(
            "ARRAY JOIN [('referrer_domain', toString(s.referrer_domain)), ('country', toString(s.country))]"
        )
        == 1
    )
    assert statement.endswith(
        "ORDER BY dimension, visitors DESC, pageviews DESC, value LIMIT {limit:UInt32} BY dimension"
    )
    assert sql.params.get("dimensions") == (["referrer_domain", "country"] if rollups else None)
