"""SQL for the stats API, from fixed fragments only; request values travel as parameters.

Each report has a rollup form and a raw form (reading ``events FINAL``). The
rollup form reads the days a :class:`~chalicelib.rollups.DaySplit` calls clean
from the rollup tables (migration ``007``, filled by compaction from
deduplicated events) and every other day of the period from ``events FINAL``,
in one statement. The raw form serves filtered queries and periods whose ends
are not whole UTC hours; both give the same numbers on the same data (tests
check this).

A :class:`Sql` collects ``{name:Type}`` placeholders and their values; no text
from a request is ever pasted into the statement.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from chalicelib.stats_params import FILTER_COLUMNS, StatsQuery

if TYPE_CHECKING:
    from chalicelib.rollups import DaySplit

START = "fromUnixTimestamp64Milli({start:Int64}, 'UTC')"
END = "fromUnixTimestamp64Milli({end:Int64}, 'UTC')"

# Per-session columns, computed from raw events; compaction stores the same in the rollup.
RAW_SESSION_COLUMNS = """
    session_key AS session_id, any(visitor_id) AS visitor_id, max(is_bot) AS is_bot,
    min(timestamp) AS started_at, max(timestamp) AS ended_at,
    countIf(type = 'pageView') AS pageviews, count() AS events,
    argMinIf(url_path, timestamp, type = 'pageView') AS entry_page,
    argMaxIf(url_path, timestamp, type = 'pageView') AS exit_page,
    max(referrer_domain) AS referrer_domain, max(utm_source) AS utm_source,
    max(utm_medium) AS utm_medium, max(utm_campaign) AS utm_campaign,
    any(browser) AS browser, any(os) AS os, any(device_type) AS device_type, any(country) AS country"""
_ROLLUP_SESSION_COLUMNS = """
    session_id, visitor_id, is_bot, started_at, ended_at, pageviews, events, entry_page, exit_page,
    referrer_domain, utm_source, utm_medium, utm_campaign, browser, os, device_type, country"""

# Breakdown name -> (column, source): "sessions" reads per-session rows, "pages" page views.
DIMENSIONS = {
    "pages": ("url_path", "pages"),
    "entry_pages": ("entry_page", "sessions"),
    "exit_pages": ("exit_page", "sessions"),
    "referrers": ("referrer_domain", "sessions"),
    "utm_sources": ("utm_source", "sessions"),
    "utm_mediums": ("utm_medium", "sessions"),
    "utm_campaigns": ("utm_campaign", "sessions"),
    "browsers": ("browser", "sessions"),
    "os": ("os", "sessions"),
    "devices": ("device_type", "sessions"),
    "countries": ("country", "sessions"),
}


@dataclass
class Sql:
    """A statement under construction and the parameters its placeholders name."""

    params: dict[str, Any] = field(default_factory=dict)

    def bind(self, query: StatsQuery) -> Sql:
        self.params.update(
            project=query.project_id,
            start=int(query.start.timestamp() * 1000),
            end=int(query.end.timestamp() * 1000),
            tz=query.tz,
            limit=query.limit,
        )
        return self

    def event_filters(self, query: StatsQuery, *, table: str = "") -> str:
        """``AND ...`` conditions on raw events for the query's filters and bot choice.

        ``table`` qualifies the columns (``e.``) where the query's own aliases share their names.
        """
        parts = [] if query.include_bots else [f"{table}is_bot = 0"]
        for number, item in enumerate(query.filters):
            value = f"f{number}"
            self.params[value] = item.value
            if item.property is None:
                parts.append(f"{table}{FILTER_COLUMNS[item.name]} = {{{value}:String}}")
            else:
                self.params[f"k{number}"] = item.property
                parts.append(f"{property_value(f'{{k{number}:String}}', table)} = {{{value}:String}}")
        return "".join(f" AND {part}" for part in parts)


def property_value(name_placeholder: str, table: str = "") -> str:
    """A property of ``props`` as text: strings as they are, numbers and booleans as JSON."""
    props = f"{table}props"
    return (
        f"if(JSONType({props}, {name_placeholder}) = 'String', JSONExtractString({props}, {name_placeholder}), "
        f"JSONExtractRaw({props}, {name_placeholder}))"
    )


def _bots(query: StatsQuery) -> str:
    return "" if query.include_bots else " AND is_bot = 0"


def uses_rollups(query: StatsQuery) -> bool:
    return not query.filters and query.hour_aligned


_CLEAN = "{clean:Array(Tuple(Date, UInt64))}"
_DIRTY = "{dirty:Array(Date)}"


def _bind_split(sql: Sql, split: DaySplit) -> None:
    sql.params.update(clean=split.clean, dirty=split.dirty)


def _union(split: DaySplit, rollup: str, raw: str) -> str:
    """The rollup part for the clean days and the raw part for the others; a side with no day is left
    out (ClickHouse would still plan, and for FINAL read, a side filtered by an empty set)."""
    parts = [part for part, days in ((rollup, split.clean), (raw, split.dirty)) if days]
    return " UNION ALL ".join(parts or [raw])


def _raw_sessions(sql: Sql, query: StatsQuery, *, days: str = "") -> str:
    return (
        f"SELECT {RAW_SESSION_COLUMNS} FROM events AS e FINAL "
        f"WHERE e.project_id = {{project:String}} AND e.timestamp >= toStartOfDay({START}) "
        f"AND e.timestamp < toStartOfDay({END}) + INTERVAL 1 DAY{days}{sql.event_filters(query, table='e.')} "
        "GROUP BY toDate(timestamp), session_key"
    )


def sessions_source(sql: Sql, query: StatsQuery, *, split: DaySplit | None) -> str:
    """One row per session (session id and UTC day) that started in the period.

    With a ``split``: clean days from the session rollup, the other days from raw events.
    """
    if split is None:
        inner = _raw_sessions(sql, query)
    else:
        _bind_split(sql, split)
        inner = _union(
            split,
            f"SELECT {_ROLLUP_SESSION_COLUMNS} FROM rollup_session_days "
            f"WHERE project_id = {{project:String}} AND day >= toDate({START}) AND day <= toDate({END}) "
            f"AND (day, gen) IN {_CLEAN}",
            _raw_sessions(sql, query, days=f" AND toDate(e.timestamp) IN {_DIRTY}"),
        )
    return f"SELECT * FROM ({inner}) WHERE started_at >= {START} AND started_at < {END}{_bots(query)}"


def overview(sql: Sql, query: StatsQuery, *, split: DaySplit | None) -> str:
    return (
        "SELECT uniq(s.visitor_id) AS visitors, count() AS sessions, sum(s.pageviews) AS pageviews, "
        "countIf(s.pageviews = 1) AS bounces, countIf(s.pageviews > 0) AS sessions_with_pageviews, "
        "sum(dateDiff('millisecond', s.started_at, s.ended_at)) AS total_duration_ms "
        f"FROM ({sessions_source(sql, query, split=split)}) AS s"
    )


def timeseries(sql: Sql, query: StatsQuery, *, split: DaySplit | None) -> str:
    bucket = "toStartOfHour({t})" if query.interval == "hour" else "toStartOfDay({t}, {{tz:String}})"
    if split is not None:
        _bind_split(sql, split)
        hours = _union(
            split,
            "SELECT hour, pageviews, events, visitors FROM rollup_traffic_hours "
            f"WHERE project_id = {{project:String}} AND hour >= {START} AND hour < {END}{_bots(query)} "
            f"AND (toDate(hour), gen) IN {_CLEAN}",
            "SELECT toDateTime(toStartOfHour(timestamp), 'UTC') AS hour, "
            "countIf(type = 'pageView') AS pageviews, count() AS events, uniqState(visitor_id) AS visitors "
            f"FROM events FINAL WHERE project_id = {{project:String}} AND timestamp >= {START} AND timestamp < {END} "
            f"AND toDate(timestamp) IN {_DIRTY}{_bots(query)} GROUP BY hour",
        )
        return (
            f"SELECT toUnixTimestamp({bucket.format(t='r.hour')}) AS bucket, sum(r.pageviews) AS pageviews, "
            f"sum(r.events) AS events, uniqMerge(r.visitors) AS visitors FROM ({hours}) AS r "
            "GROUP BY bucket ORDER BY bucket"
        )
    return (
        f"SELECT toUnixTimestamp({bucket.format(t='timestamp')}) AS bucket, countIf(type = 'pageView') AS pageviews, "
        "count() AS events, uniq(visitor_id) AS visitors FROM events FINAL "
        f"WHERE project_id = {{project:String}} AND timestamp >= {START} AND timestamp < {END}"
        f"{sql.event_filters(query)} GROUP BY bucket ORDER BY bucket"
    )


def breakdown(sql: Sql, query: StatsQuery, dimension: str, *, split: DaySplit | None) -> str:
    column, source = DIMENSIONS[dimension]
    if source == "sessions":
        return (
            f"SELECT s.{column} AS value, uniq(s.visitor_id) AS visitors, count() AS sessions, "
            f"sum(s.pageviews) AS pageviews FROM ({sessions_source(sql, query, split=split)}) AS s "
            "GROUP BY value ORDER BY visitors DESC, pageviews DESC, value LIMIT {limit:UInt32}"
        )
    if split is not None:
        rows = f"SELECT url_path, pageviews, visitors FROM ({_page_rows(sql, query, split)}) AS p"
        # Merge visitor states only for the pages that make the list.
        return (
            f"SELECT r.url_path AS value, uniqCombinedMerge(14)(r.visitors) AS visitors, sum(r.pageviews) AS pageviews FROM ({rows}) AS r "
            f"WHERE r.url_path IN (SELECT q.url_path FROM ({rows}) AS q GROUP BY q.url_path "
            "ORDER BY sum(q.pageviews) DESC, q.url_path LIMIT {limit:UInt32}) "
            "GROUP BY value ORDER BY pageviews DESC, value LIMIT {limit:UInt32}"
        )
    return (
        "SELECT url_path AS value, uniq(visitor_id) AS visitors, count() AS pageviews FROM events FINAL "
        f"WHERE project_id = {{project:String}} AND timestamp >= {START} AND timestamp < {END} "
        f"AND type = 'pageView'{sql.event_filters(query)} "
        "GROUP BY value ORDER BY pageviews DESC, value LIMIT {limit:UInt32}"
    )


def _page_rows(sql: Sql, query: StatsQuery, split: DaySplit) -> str:
    """Per-page rows covering the period: clean whole UTC days from the daily rollup, clean hours at
    the ends from the hourly one, the dirty days from raw events."""
    _bind_split(sql, split)
    first_day = (query.start + timedelta(days=1) - timedelta(microseconds=1)).date()  # first whole day
    end_day = query.end.date()  # days before it are whole
    hourly = f"project_id = {{project:String}}{_bots(query)} AND (toDate(hour), gen) IN {_CLEAN} AND "
    raw = (
        "SELECT url_path, count() AS pageviews, uniqCombinedState(14)(visitor_id) AS visitors FROM events FINAL "
        f"WHERE project_id = {{project:String}} AND timestamp >= {START} AND timestamp < {END} "
        f"AND type = 'pageView' AND toDate(timestamp) IN {_DIRTY}{_bots(query)} GROUP BY url_path"
    )
    if first_day >= end_day:
        rollup = f"SELECT url_path, pageviews, visitors FROM rollup_page_hours WHERE {hourly}hour >= {START} AND hour < {END}"
        return _union(split, rollup, raw)
    sql.params.update(first_day=first_day.isoformat(), end_day=end_day.isoformat())
    rollup = (
        "SELECT url_path, pageviews, visitors FROM rollup_page_days "
        f"WHERE project_id = {{project:String}}{_bots(query)} AND day >= {{first_day:Date}} AND day < {{end_day:Date}} "
        f"AND (day, gen) IN {_CLEAN} "
        "UNION ALL SELECT url_path, pageviews, visitors FROM rollup_page_hours "
        f"WHERE {hourly}((hour >= {START} AND hour < toDateTime({{first_day:Date}}, 'UTC')) "
        f"OR (hour >= toDateTime({{end_day:Date}}, 'UTC') AND hour < {END}))"
    )
    return _union(split, rollup, raw)


def _raw_where(sql: Sql, query: StatsQuery) -> str:
    return (
        f"WHERE project_id = {{project:String}} AND timestamp >= {START} AND timestamp < {END}"
        f"{sql.event_filters(query)}"
    )


def errors(sql: Sql, query: StatsQuery) -> str:
    return (
        "SELECT JSONExtractString(props, 'message') AS message, JSONExtractString(props, 'source') AS source, "
        "count() AS count, uniqExact(session_key) AS sessions, "
        "toUnixTimestamp64Milli(min(timestamp)) AS first_seen, toUnixTimestamp64Milli(max(timestamp)) AS last_seen, "
        "argMax(JSONExtractString(props, 'stack'), timestamp) AS sample_stack "
        f"FROM events FINAL {_raw_where(sql, query)} AND type = 'error' "
        "GROUP BY message, source ORDER BY count DESC, message LIMIT {limit:UInt32}"
    )


def custom_events(sql: Sql, query: StatsQuery) -> str:
    return (
        "SELECT type AS name, count() AS count, uniq(visitor_id) AS visitors "
        f"FROM events FINAL {_raw_where(sql, query)} AND type NOT IN ('pageView', 'click', 'error') "
        "GROUP BY name ORDER BY count DESC, name LIMIT {limit:UInt32}"
    )


def event_properties(sql: Sql, query: StatsQuery, name: str, prop: str) -> str:
    sql.params.update(event_name=name, property=prop)
    return (
        f"SELECT {property_value('{property:String}')} AS value, count() AS count, uniq(visitor_id) AS visitors "
        f"FROM events FINAL {_raw_where(sql, query)} AND type = {{event_name:String}} "
        "AND JSONHas(props, {property:String}) "
        "GROUP BY value ORDER BY count DESC, value LIMIT {limit:UInt32}"
    )


def clicks(sql: Sql, query: StatsQuery) -> str:
    return (
        "SELECT JSONExtractString(props, 'tag') AS tag, JSONExtractString(props, 'id') AS element_id, "
        "JSONExtractString(props, 'text') AS text, JSONExtractString(props, 'href') AS href, "
        "count() AS count, uniq(visitor_id) AS visitors "
        f"FROM events FINAL {_raw_where(sql, query)} AND type = 'click' "
        "GROUP BY tag, element_id, text, href ORDER BY count DESC, text LIMIT {limit:UInt32}"
    )


def realtime_counts(sql: Sql, query: StatsQuery) -> str:
    return (
        "SELECT uniq(visitor_id) AS visitors, countIf(type = 'pageView') AS pageviews, count() AS events "
        f"FROM events FINAL {_raw_where(sql, query)}"
    )


def latest_events(sql: Sql, query: StatsQuery) -> str:
    return (
        "SELECT toUnixTimestamp64Milli(timestamp) AS at_ms, type, url_path, title, country, browser, "
        "device_type, visitor_id "
        f"FROM events FINAL {_raw_where(sql, query)} ORDER BY at_ms DESC, event_id LIMIT {{limit:UInt32}}"
    )
