"""SQL for the stats API, from fixed fragments only; request values travel as parameters.

Each report has a rollup form and a raw form (reading ``events FINAL``). The
rollup form starts with ``WITH`` the split of its window
(:data:`chalicelib.rollups.sql.SPLIT`, where :data:`~chalicelib.rollups.split.SPLIT_MARK`
stands; :mod:`chalicelib.rollups.split` runs it) and reads clean
days and hours from the rollup tables (migration ``008``, filled by
compaction from deduplicated events) and everything else (dirty hours, and
the partial hours at the ends of a period in a half-hour zone) from
``events FINAL``. The raw form serves filtered queries, day buckets in a zone
not a whole number of hours from UTC, and ``rollups=False``; both give the
same numbers on the same data (tests check this).

A :class:`Sql` collects ``{name:Type}`` placeholders and their values; no text
from a request is ever pasted into the statement.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from chalicelib.goals import Goal, like_pattern
from chalicelib.rollups.split import PREFIXES_MARK, SPLIT_MARK, UNFLAGGED_MARK, when_all, when_open
from chalicelib.rollups.sql import (
    AFTER_CUT,
    COPY_MARGIN,
    EMPTY_SKETCH,
    END,
    EXACT_HOUR,
    HOUR_SESSION_COLUMNS,
    HOUR_SESSION_NAMES,
    RAW_SESSION_COLUMNS,
    SESSION_CORE_COLUMNS,
    SESSION_CORE_NAMES,
    SESSION_MERGE_COLUMNS,
    SESSION_NAMES,
    START,
    WHOLE_ROW_HOUR,
    WINDOW_HOURS,
    cut_rows,
    dirty_prewhere,
    end_slot,
    exact,
    member,
    session_figures,
)
from chalicelib.stats.params import FILTER_COLUMNS, StatsQuery

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


def _path_matches(pattern: str, params: dict[str, Any], name: str, table: str) -> str:
    """The path matches a ``*`` pattern: equality without ``*``, a prefix test for one trailing ``*``,
    ``LIKE`` otherwise (equality and prefix are several times faster than ``LIKE`` over a month of rows)."""
    stars = pattern.count("*")
    if stars == 0:
        params[name] = pattern
        return f"{table}url_path = {{{name}:String}}"
    if stars == 1 and pattern.endswith("*"):
        params[name] = pattern[:-1]
        return f"startsWith({table}url_path, {{{name}:String}})"
    params[name] = like_pattern(pattern)
    return f"{table}url_path LIKE {{{name}:String}}"


def goal_condition(goal: Goal, params: dict[str, Any], name: str, *, table: str = "") -> str:
    """True for an event (of ``table``, e.g. ``e.``) that reaches ``goal``; its values go into ``params``
    under names starting with ``name``."""
    if goal.page:
        return f"({table}type = 'pageView' AND {_path_matches(goal.page, params, f'{name}_page', table)})"
    params[f"{name}_event"] = goal.event
    parts = [f"{table}type = {{{name}_event:String}}"]
    for number, (key, value) in enumerate(goal.props):
        params[f"{name}_k{number}"], params[f"{name}_v{number}"] = key, value
        parts.append(f"{property_value(f'{{{name}_k{number}:String}}', table)} = {{{name}_v{number}:String}}")
    return f"({' AND '.join(parts)})"


def _bots(query: StatsQuery, table: str = "") -> str:
    """``AND`` the bot choice; ``table`` qualifies the column (``s.``)."""
    return "" if query.include_bots else f" AND {table}is_bot = 0"


def uses_rollups(query: StatsQuery) -> bool:
    """Unfiltered reports read the rollups."""
    return not query.filters


_HOUR = "toStartOfHour(timestamp)"
_DAY = "toDate(timestamp)"
_PAGE_VIEWS = "type = 'pageView'"


def _exact_period(table: str = "") -> str:
    """The period's exact bounds, tested after FINAL (a read keeps the copy margin before it)."""
    timestamp = exact(f"{table}timestamp")
    return f"{timestamp} >= {START} AND {timestamp} < {END}"


def _inside(hour: str) -> str:
    """The hour starting at ``hour`` lies wholly inside the period."""
    return f"{hour} >= {START} AND {hour} + INTERVAL 1 HOUR <= {END}"


def _clean_inside(hour: str) -> str:
    """The hour is clean and wholly inside the period: the hourly rollups answer it."""
    return f"{member(hour, 'clean_hours')} AND {_inside(hour)}"


def _whole_day(day: str) -> str:
    """The UTC day lies wholly inside the period (``first_day`` and ``end_day``: :func:`_bind_whole_days`)."""
    return f"{day} >= {{first_day:Date}} AND {day} < {{end_day:Date}}"


def _bind_whole_days(sql: Sql, query: StatsQuery) -> None:
    """The parameters :func:`_whole_day` reads: the first UTC day wholly inside the period, the day after the last."""
    first_day, end_day = _whole_day_bounds(query.start, query.end)
    sql.params.update(first_day=first_day, end_day=end_day)


def _clean_whole_day(day: str) -> str:
    """The day is clean and wholly inside the period: the daily rollups answer it."""
    return f"{member(day, 'clean_days')} AND {_whole_day(day)}"


def _hours_left(also: str = "") -> str:
    """The clean hours the daily rollups don't answer (:func:`_clean_whole_day`), and ``also`` (a condition
    on ``h``), as a constant: an hourly read prunes to them (``member(..., derived=True)``)."""
    return f"arrayFilter(h -> NOT (has(clean_days, toDate(h)) AND {_whole_day('toDate(h)')}){also}, clean_hours)"


def _floor_hour(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


def _partial_hours(*times: datetime) -> list[datetime]:
    """The hours that ``times`` fall inside of (not on the start of): rollup rows can't be split there."""
    return sorted({_floor_hour(t) for t in times if t != _floor_hour(t)})


def _midnights(query: StatsQuery) -> list[datetime]:
    """Of a timeseries by day, the local midnights after its start (the buckets' starts but the first)."""
    if query.interval != "day":
        return []
    zone = ZoneInfo(query.tz)
    day, midnights = query.start.astimezone(zone).date(), []
    while (midnight := datetime.combine(day, time(), zone).astimezone(UTC)) < query.end:
        midnights.append(midnight)
        day += timedelta(days=1)
    return [m for m in midnights if m > query.start]


def _bucket_edges(query: StatsQuery) -> list[datetime]:
    """Of a timeseries by day, the UTC hours a bucket starts inside of: local midnights in a zone a fraction
    of an hour from UTC (India's +5:30). Their hourly rows would land whole in one bucket; they are read
    from their halves (:func:`_half_edges`) or raw, so each event lands in its own."""
    return _partial_hours(*_midnights(query))


def _half_edges(query: StatsQuery) -> list[datetime]:
    """Of :func:`_bucket_edges`, those a bucket starts in the middle of (India's 18:00 UTC, not Nepal's):
    clean, they are read from their halves (``rollup_traffic_halves``, migration 020)."""
    return sorted({_floor_hour(m) for m in _midnights(query) if m.minute == 30 and m.second == 0})


def _whole_day_bounds(start: datetime, end: datetime) -> tuple[date, date]:
    """The first UTC day lying wholly inside ``start`` to ``end``, and the day after the last."""
    return (start + timedelta(days=1) - timedelta(microseconds=1)).date(), end.date()


def _whole_utc_days(start: datetime, end: datetime) -> list[date]:
    """The UTC days lying wholly inside ``start`` to ``end``."""
    first, after = _whole_day_bounds(start, end)
    return [first + timedelta(days=n) for n in range(max(0, (after - first).days))]


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


def _with_split(sql: Sql, first: datetime, last: datetime) -> str:
    """``WITH`` the split of the hours from ``first``'s to ``last``'s (inclusive) into clean and dirty."""
    sql.params.update(window_start=_floor_hour(first), window_end=_floor_hour(last) + timedelta(hours=1))
    return f"WITH {SPLIT_MARK} "


# The hours a report reads raw though they aren't dirty, and their days (:func:`_edge_hours`).
_EDGES = "{edges:Array(DateTime('UTC'))}"
_EDGE_DAYS = "{edge_days:Array(Date)}"
# Of a timeseries by day, the hours a bucket starts inside of (:func:`_bucket_edges`).
_BUCKET_EDGES = "{bucket_edges:Array(DateTime('UTC'))}"
_HALF_EDGES = "{half_edges:Array(DateTime('UTC'))}"
_DIRTY_OR_EDGE_DAYS = f"arrayConcat(dirty_days, {_EDGE_DAYS})"


def _edge_hours(sql: Sql, query: StatsQuery, also: Iterable[datetime] = ()) -> list[datetime]:
    """The partial hours at the ends of a period that doesn't start or end on a whole hour, and ``also``;
    bound as ``edges``, with their days as ``edge_days``."""
    edges = sorted({*_partial_hours(query.start, query.end), *also})
    sql.params.update(edges=edges, edge_days=sorted({h.date() for h in edges}))
    return edges


def _cut_rows(table: str, columns: str, where: str = "") -> str:
    """:func:`cut_rows` and ``where`` (``AND`` conditions), left out when the report uses no cut."""
    return when_all("cut_hours", cut_rows(table, columns) + where)


def _raw_hours(
    sql: Sql,
    query: StatsQuery,
    select: str,
    *,
    group_by: str,
    where: str = "",
    also: Iterable[datetime] = (),
    more: tuple[str, str] | None = None,
) -> str:
    """A ``UNION ALL`` branch: raw events of the period in the hours the rollups don't answer: dirty
    hours, the partial hours at the ends of a period that doesn't start or end on a whole hour, the
    hours ``also`` names (clean ones too), and those of ``more``: arrays of hours and of their days the
    statement computes, constants (say, clean hours without the rollup rows this report reads:
    :data:`chalicelib.rollups.split.UNFLAGGED_MARK`)."""
    also = set(also)
    edges = _edge_hours(sql, query, also)
    hours, days = f"dirty_hours, {_EDGES}", _DIRTY_OR_EDGE_DAYS
    unanswered = f"NOT ({_clean_inside(EXACT_HOUR)})"
    if also:
        unanswered = f"({unanswered} OR {member(EXACT_HOUR, _EDGES)})"
    if more:
        hours, days = f"{hours}, {more[0]}", f"arrayConcat({days}, {more[1]})"
        unanswered = f"({unanswered} OR {member(EXACT_HOUR, more[0])})"
    branch = (
        f" UNION ALL SELECT {select} FROM events FINAL PREWHERE {dirty_prewhere(f'arrayConcat({hours})')} "
        f"WHERE project_id = {{project:String}} AND {_exact_period()} "
        f"AND {member(_DAY, days)} "
        f"AND {unanswered} AND {AFTER_CUT}{where}{_bots(query)} GROUP BY {group_by}"
    )
    return branch if edges or more else when_open(branch)


# Clean hours without the rollup rows of migrations 019 and 020 (UNFLAGGED_MARK), and their days.
_UNFLAGGED = ("unflagged_hours", "unflagged_days")


def _raw_sessions(sql: Sql, query: StatsQuery, *, extra: str = "") -> str:
    """Sessions of the UTC days the period touches, from raw events; ``extra`` adds columns."""
    return (
        f"SELECT {RAW_SESSION_COLUMNS}{extra} FROM events AS e FINAL "
        f"WHERE e.project_id = {{project:String}} AND e.timestamp >= toStartOfDay({START}) "
        f"AND e.timestamp < toStartOfDay({END}) + INTERVAL 1 DAY{sql.event_filters(query, table='e.')} "
        "GROUP BY toDate(timestamp), session_key"
    )


# The UTC days of a report's window (``WINDOW_HOURS`` gives its hours).
_WINDOW_DAYS = (
    "project_id = {project:String} AND day >= toDate({window_start:DateTime('UTC')}) "
    "AND day < toDate({window_end:DateTime('UTC')})"
)
# ``events FINAL`` in the dirty hours of the window's days not clean, for their sessions' hourly parts.
_DIRTY_HOUR_EVENTS = (
    f"FROM events FINAL PREWHERE {dirty_prewhere('dirty_hours')} WHERE project_id = {{project:String}} "
    f"AND {member(_DAY, 'dirty_days')} AND {member(EXACT_HOUR, 'dirty_hours')} AND NOT {member(_DAY, 'clean_days')} "
    f"AND {AFTER_CUT}"
)


def _newest(names: str) -> str:
    """The columns ``names`` (a session part's, after its ``session_id``) of the newest generation of the
    rows grouped by (hour, session id), as ``FINAL`` keeps them."""
    return ", ".join(f"argMax({name}, gen) AS {name}" for name in names.split(", ")[1:])


def _running_on(dirty: str, later: str) -> str:
    """Ids of the sessions with a part in the hours ``dirty`` (dirty hours: raw events, and the rows of
    their cuts) or ``later`` (clean hours): derived arrays of the split. Ids only: no FINAL, and a few more
    do no harm. Of a dirty hour with a cut, those before the cut are the cut's rows."""
    return (
        f"SELECT session_key AS session_id FROM events PREWHERE {dirty_prewhere('dirty_hours')} "
        f"WHERE project_id = {{project:String}} AND {member(_DAY, 'dirty_days')} "
        f"AND {member(_HOUR, dirty, derived=True)}"
        + _cut_rows("rollup_session_cuts", "session_id", f" AND {member('hour', dirty, derived=True)}")
        + when_all(
            later,
            f" UNION ALL SELECT session_id FROM rollup_session_hours WHERE {WINDOW_HOURS} "
            f"AND {member('hour', later, derived=True)}",
        )
    )


_DIMS_HOURS = member("hour", "dims_hours", derived=True)
# Of rollup_session_hours: the prefix's session parts that ended from ``tail_from`` on.
_TAIL_PARTS = f"{WINDOW_HOURS} AND {_DIMS_HOURS} AND hour >= toStartOfHour(tail_from) AND ended_at >= tail_from"
# Of rollup_session_hours: the parts of the sessions running on past the prefix, found by ``session_hash``
# (migration 015) without FINAL.
_RUNNING_HASHES = (
    f"session_hash IN (SELECT sipHash64(session_id) FROM ({_running_on('dims_dirty_hours', 'dims_later_hours')}))"
)
# The session breakdowns' prefix (rollup_prefix_dims, migration 018) sums sessions by when they ended in
# it (rollups.sql.end_slot). A report reads the sums of the slots before ``tail_from`` and the sessions
# ended from it on one by one: the slot of the earliest end of a session running on past the prefix (those
# ended before it are over for good), or the prefix's end. A part of another session with the same hash
# only makes the slot earlier: more sessions are read one by one, none is counted twice.
_TAIL_FROM = (
    "(SELECT {slot} FROM (SELECT max(through) AS p, least(p, min(e)) AS t FROM "
    "(SELECT arrayJoin(dims_prefixes) AS through, through AS e UNION ALL SELECT toDateTime(0, 'UTC') AS through, "
    "toDateTime(max(ended_at), 'UTC') AS e FROM rollup_session_hours PREWHERE {running_hashes} "
    "WHERE {window} AND {hours} GROUP BY session_id))) AS tail_from"
).format(
    slot=end_slot("t", "p"),
    running_hashes=_RUNNING_HASHES,
    window=WINDOW_HOURS,
    hours=_DIMS_HOURS,
)


def _rollup_sessions(sql: Sql, query: StatsQuery) -> str:
    """Sessions of the UTC days the period touches that :func:`_dimension_rows` doesn't sum: of clean days,
    those started in the hours at the ends of a period that doesn't start or end on a whole hour; other days
    merged from the hourly parts of clean hours and raw events of dirty ones. Of the day of the session
    breakdowns' prefix (``dims_prefixes``), only the sessions ended from ``tail_from`` on or running on past
    it: their parts ended from then on, and their earlier ones (``early``) found by ``session_hash``, each
    of its newest generation. A session with early parts only is another's with the same hash: left out."""
    _edge_hours(sql, query)
    parts = (
        f"SELECT hour, 0 AS early, {HOUR_SESSION_NAMES} FROM rollup_session_hours FINAL "
        f"WHERE {WINDOW_HOURS} AND {member('hour', 'other_open_hours', derived=True)} "
        f"UNION ALL SELECT {_HOUR} AS hour, 0 AS early, {HOUR_SESSION_COLUMNS} {_DIRTY_HOUR_EVENTS} "
        "GROUP BY hour, session_key"
        + _cut_rows("rollup_session_cuts", f"hour, 0 AS early, {HOUR_SESSION_NAMES}")
        + when_all(
            "dims_hours",
            f" UNION ALL SELECT hour, 0 AS early, {HOUR_SESSION_NAMES} FROM rollup_session_hours FINAL "
            f"WHERE {_TAIL_PARTS} "
            f"UNION ALL SELECT hour, 1 AS early, session_id, {_newest(HOUR_SESSION_NAMES)} FROM rollup_session_hours "
            f"PREWHERE {_RUNNING_HASHES} OR session_hash IN (SELECT sipHash64(session_id) FROM rollup_session_hours "
            f"WHERE {_TAIL_PARTS}) WHERE {WINDOW_HOURS} AND {_DIMS_HOURS} "
            "GROUP BY hour, session_id HAVING ended_at < tail_from",
        )
    )
    return (
        f"SELECT {SESSION_NAMES} FROM rollup_session_days FINAL WHERE {_WINDOW_DAYS} AND {member('day', 'clean_days')} "
        # The key prunes to the days of those hours: none, for a period of whole hours.
        f"AND day IN {_EDGE_DAYS} AND toStartOfHour(started_at) IN {_EDGES}"
        + when_open(
            f" UNION ALL SELECT p.session_id AS session_id, {SESSION_MERGE_COLUMNS} FROM ({parts}) AS p "
            "GROUP BY toDate(p.hour), p.session_id HAVING min(p.early) = 0"
        )
    )


def sessions_source(sql: Sql, query: StatsQuery, *, rollups: bool, extra: str = "") -> str:
    """One row per session (session id and UTC day) that started in the period, to put after
    :func:`_with_sessions_split`'s ``WITH``; ``extra`` adds columns (raw events only). With ``rollups``, only
    the sessions :func:`_dimension_rows` doesn't sum."""
    inner = _rollup_sessions(sql, query) if rollups else _raw_sessions(sql, query, extra=extra)
    return f"SELECT * FROM ({inner}) WHERE started_at >= {START} AND started_at < {END}{_bots(query)}"


def _with_sessions_split(sql: Sql, query: StatsQuery, rollups: bool) -> str:
    if not rollups:
        return ""
    first = query.start.replace(hour=0, minute=0, second=0, microsecond=0)
    last = (query.end - timedelta(microseconds=1)).replace(hour=23, minute=0, second=0, microsecond=0)
    return _with_split(sql, first, last)


# The overview's figures, each merged from partial rows (``r``) of the columns of rollup_session_starts.
OVERVIEW_FIGURES = {
    "visitors": "uniqMergeIf(r.visitors, {cond})",
    "sessions": "sumIf(r.sessions, {cond})",
    "pageviews": "sumIf(r.pageviews, {cond})",
    "bounces": "sumIf(r.bounces, {cond})",
    "sessions_with_pageviews": "sumIf(r.sessions_with_pageviews, {cond})",
    "total_duration_ms": "sumIf(r.duration_ms, {cond})",
}
# rollup_session_starts' and rollup_prefix_starts' figures, signed as :func:`_signed_figures`' are.
_STARTS_SUMS = (
    "toInt64(sessions) AS sessions, toInt64(pageviews) AS pageviews, toInt64(bounces) AS bounces, "
    "toInt64(sessions_with_pageviews) AS sessions_with_pageviews, duration_ms"
)
_STARTS_COLUMNS = f"{_STARTS_SUMS}, visitors"
_NO_SUMS = "toInt64(0), toInt64(0), toInt64(0), toInt64(0), toInt64(0)"
_NO_VISITORS = "arrayReduce('uniqState', emptyArrayString())"
_SPLIT_AT = "fromUnixTimestamp64Milli({split_at:Int64}, 'UTC')"
# The first branch of the overview's rows with rollups: none, but its columns named and typed, so that any
# of the others can be left out (rollups.split.when_all).
_OVERVIEW_HEAD = (
    "SELECT toUInt8(0) AS current, toInt64(0) AS sessions, toInt64(0) AS pageviews, toInt64(0) AS bounces, "
    f"toInt64(0) AS sessions_with_pageviews, toInt64(0) AS duration_ms, {_NO_VISITORS} AS visitors WHERE 0 "
)


def _signed_figures(t: str) -> str:
    """The overview's sums over signed per-session rows of table alias ``t`` (``sign`` -1 takes a row
    back); a visitor is only ever added (a visitor of part of a session is one of the whole)."""
    return (
        f"sum({t}.sign) AS sessions, sum({t}.sign * toInt64({t}.pageviews)) AS pageviews, "
        f"sumIf({t}.sign, {t}.pageviews = 1) AS bounces, sumIf({t}.sign, {t}.pageviews > 0) AS sessions_with_pageviews, "
        f"sum({t}.sign * dateDiff('millisecond', {t}.started_at, {t}.ended_at)) AS duration_ms, "
        f"uniqStateIf({t}.visitor_id, {t}.sign > 0) AS visitors"
    )


def _overview_sessions() -> str:
    """Signed per-session rows of the days of the window the overview does not sum whole: the
    partial clean days from the daily rollup; other days merged from the hourly parts of clean hours
    and raw events of dirty ones.

    On a day with a prefix (``prefixes``: its clean hours before ``through`` summed by compaction,
    ``rollup_prefix_starts``), only sessions with a part from ``through`` on are merged: each counts
    whole (``sign`` 1), and what the prefix counted of it, its parts before ``through``, is taken back
    (``sign`` -1). Sessions wholly inside the prefix are the prefix's.

    Their earlier parts are looked up by ``session_hash`` (migration ``015``), without ``FINAL``: the
    string ids of a busy day's parts are nine times the bytes, and ``FINAL`` reads its key whole. The
    parts found are few; each keeps its newest generation, as ``FINAL`` would. A part of another session
    with the same hash (odds of about 2 in 10^9 on the busy bench day) has no later part: it counts +1
    and -1, and its visitor is the prefix's already.
    """
    running_on = _running_on("dirty_prefix_hours", "after_prefix_hours")
    parts = (
        f"SELECT {_HOUR} AS hour, 0 AS early, {SESSION_CORE_COLUMNS} {_DIRTY_HOUR_EVENTS} GROUP BY hour, session_key"
        + when_all(
            "later_hours",
            f" UNION ALL SELECT hour, 0 AS early, {SESSION_CORE_NAMES} FROM rollup_session_hours FINAL "
            f"WHERE {WINDOW_HOURS} AND {member('hour', 'later_hours', derived=True)}",
        )
        + when_all(
            "prefix_hours",
            f" UNION ALL SELECT hour, 1 AS early, session_id, {_newest(SESSION_CORE_NAMES)} FROM rollup_session_hours "
            f"PREWHERE session_hash IN (SELECT sipHash64(session_id) FROM ({running_on})) "
            f"WHERE {WINDOW_HOURS} AND {member('hour', 'prefix_hours', derived=True)} GROUP BY hour, session_id",
        )
        + _cut_rows("rollup_session_cuts", f"hour, 0 AS early, {SESSION_CORE_NAMES}")
    )
    merged = (
        "SELECT argMin(p.visitor_id, p.started_at) AS visitor_id, max(p.is_bot) AS bot_all, maxIf(p.is_bot, p.early = 1) AS bot_early, "
        "min(p.started_at) AS started_at, max(p.ended_at) AS ended_all, maxIf(p.ended_at, p.early = 1) AS ended_early, "
        "sum(p.pageviews) AS pageviews_all, sumIf(p.pageviews, p.early = 1) AS pageviews_early, "
        f"countIf(p.early = 1) > 0 AS cut FROM ({parts}) AS p GROUP BY toDate(p.hour), p.session_id"
    )
    return (
        "SELECT toInt8(arrayJoin(if(m.cut, [1, -1], [1]))) AS sign, m.visitor_id AS visitor_id, "
        "if(sign = 1, m.bot_all, m.bot_early) AS is_bot, m.started_at AS started_at, "
        "if(sign = 1, m.ended_all, m.ended_early) AS ended_at, if(sign = 1, m.pageviews_all, m.pageviews_early) AS pageviews "
        f"FROM ({merged}) AS m"
        + when_all(
            "clean_days partial_days",
            " UNION ALL SELECT toInt8(1) AS sign, visitor_id, is_bot, started_at, ended_at, pageviews "
            f"FROM rollup_session_days FINAL WHERE {_WINDOW_DAYS} "
            f"AND {member('day', 'arrayIntersect(clean_days, {partial_days:Array(Date)})')}",
        )
    )


def overview(sql: Sql, query: StatsQuery, split_at: datetime, *, rollups: bool) -> str:
    """The overview figures of the sessions started from ``split_at`` to the end of ``query``, and as
    ``previous_<name>`` those started before ``split_at``: both periods in one read.

    With ``rollups``, the whole hours of clean days come summed from ``rollup_session_starts``, and
    those of a day still going from its prefix (:func:`_overview_sessions`); the sessions of other days,
    and of the hours a period starts, ends or splits inside, one by one.
    """
    sql.params["split_at"] = int(split_at.timestamp() * 1000)
    partial = _partial_hours(query.start, split_at, query.end)
    sql.params.update(partial_hours=partial, partial_days=sorted({h.date() for h in partial}))

    def summed(hour: str, day: str) -> str:  # the sessions rollup_session_starts answers
        return (
            f"{member(day, 'clean_days')} AND {_inside(hour)} "
            f"AND NOT has({{partial_hours:Array(DateTime('UTC'))}}, {hour})"
        )

    started = "toStartOfHour(s.started_at)"
    if rollups:
        period = f"s.started_at >= {START} AND s.started_at < {END}{_bots(query, 's.')}"
        # Days the current or the previous period holds whole: their visitors in one state per day.
        sql.params["whole_days"] = [
            d
            for d in _whole_utc_days(query.start, query.end)
            if not _midnight(d) < split_at < _midnight(d) + timedelta(days=1)
        ]
        whole = "has({whole_days:Array(Date)}, day)"
        # Sessions one by one: of days a period splits inside, and of days not clean (dirty or open hours).
        sessions = (
            f"UNION ALL SELECT s.started_at >= {_SPLIT_AT} AS current, {_signed_figures('s')} "
            f"FROM ({_overview_sessions()}) AS s WHERE {period} "
            f"AND NOT ({summed(started, 'toDate(s.started_at)')}) GROUP BY current"
        )
        if not partial:
            sessions = when_open(sessions)
        starts = (
            f"FROM rollup_session_starts FINAL WHERE project_id = {{project:String}} AND {summed('start_hour', 'day')}"
        )

        def prefix_rows(prefixes: str) -> str:  # the hourly rows of the day prefixes ``prefixes``
            return (
                f"FROM rollup_prefix_starts FINAL WHERE project_id = {{project:String}} "
                f"AND {member('through', prefixes, derived=True)} AND {_inside('start_hour')}{_bots(query)}"
            )

        rows = (
            _OVERVIEW_HEAD
            + when_all(
                "clean_days",
                f"UNION ALL SELECT start_hour >= {_SPLIT_AT} AS current, {_STARTS_COLUMNS} {starts} "
                f"AND NOT {whole}{_bots(query)} ",
            )
            + when_all(
                "clean_days whole_days",
                f"UNION ALL SELECT start_hour >= {_SPLIT_AT} AS current, {_STARTS_SUMS}, {_NO_VISITORS} AS visitors "
                f"{starts} AND {whole}{_bots(query)} "
                f"UNION ALL SELECT toDateTime(day, 'UTC') >= {_SPLIT_AT} AS current, {_NO_SUMS}, visitors "
                f"FROM rollup_session_day_visitors FINAL WHERE project_id = {{project:String}} "
                f"AND {member('day', 'clean_days')} AND {whole}{_bots(query)} ",
            )
            + when_open(  # prefixes are of days not clean
                when_all(
                    "prefixes_split",
                    f"UNION ALL SELECT start_hour >= {_SPLIT_AT} AS current, {_STARTS_COLUMNS} "
                    f"{prefix_rows('prefixes_split')} ",
                )
                # A day a period holds whole: its prefix's visitors in one row (migration 016).
                + when_all(
                    "prefixes_whole",
                    f"UNION ALL SELECT start_hour >= {_SPLIT_AT} AS current, {_STARTS_SUMS}, {_NO_VISITORS} AS visitors "
                    f"{prefix_rows('prefixes_whole')} "
                    f"UNION ALL SELECT toDateTime(toDate(through), 'UTC') >= {_SPLIT_AT} AS current, {_NO_SUMS}, visitors "
                    f"FROM rollup_prefix_starts FINAL WHERE project_id = {{project:String}} "
                    f"AND {member('through', 'prefixes_whole', derived=True)} AND start_hour = {WHOLE_ROW_HOUR}"
                    f"{_bots(query)} ",
                )
            )
            + sessions
        )
        with_ = f"{_with_sessions_split(sql, query, rollups)}, {PREFIXES_MARK} "
    else:
        rows = (
            f"SELECT s.started_at >= {_SPLIT_AT} AS current, {session_figures('s')} "
            f"FROM ({sessions_source(sql, query, rollups=False)}) AS s GROUP BY current"
        )
        with_ = ""
    figures = [f"{f.format(cond='r.current')} AS {name}" for name, f in OVERVIEW_FIGURES.items()] + [
        f"{f.format(cond='NOT r.current')} AS previous_{name}" for name, f in OVERVIEW_FIGURES.items()
    ]
    return f"{with_}SELECT {', '.join(figures)} FROM ({rows}) AS r"


def _with_period_split(sql: Sql, query: StatsQuery) -> str:
    return _with_split(sql, query.start, query.end - timedelta(microseconds=1))


def _half_rows(query: StatsQuery) -> str:
    """A ``UNION ALL`` branch of a timeseries: the halves of the clean hours its day buckets start in the
    middle of (``half_edges``), each at its start. Not aliased ``hour``: the ``WHERE`` would test the alias."""
    return when_all(
        "clean_hours half_edges",
        " UNION ALL SELECT hour + toIntervalMinute(30 * half) AS half_start, pageviews, events, visitors "
        f"FROM rollup_traffic_halves FINAL WHERE project_id = {{project:String}} AND {member('hour', _HALF_EDGES)} "
        f"AND {_clean_inside('hour')} AND NOT {member('hour', _UNFLAGGED[0])}{_bots(query)}",
    )


def timeseries(sql: Sql, query: StatsQuery, *, rollups: bool) -> str:
    bucket = "toStartOfHour({t})" if query.interval == "hour" else "toStartOfDay({t}, {{tz:String}})"
    if rollups:
        # Day buckets a UTC day lies wholly inside (every day in UTC): that day's traffic in one row.
        zone = ZoneInfo(query.tz)
        sql.params["day_rows"] = [
            d
            for d in _whole_utc_days(query.start, query.end)
            if query.interval == "day"
            and _midnight(d).astimezone(zone).date() == (_midnight(d) + timedelta(hours=23)).astimezone(zone).date()
        ]

        def by_day(day: str) -> str:
            return f"has({{day_rows:Array(Date)}}, {day})"

        # Hours a bucket starts inside of: read raw, by the minute (no cut of theirs is used: split.used_cuts),
        # but those it starts in the middle of: from their halves when clean and written with them.
        edges = sql.params["bucket_edges"] = _bucket_edges(query)
        halves = sql.params["half_edges"] = _half_edges(query)
        sql.params["half_edge_days"] = sorted({h.date() for h in halves})
        raw_time = "toStartOfMinute(timestamp)" if edges else _HOUR
        hours_left = f"arrayFilter(h -> NOT (has(clean_days, toDate(h)) AND {by_day('toDate(h)')}), clean_hours)"
        hours = (
            "SELECT toDateTime(0, 'UTC') AS hour, toUInt64(0) AS pageviews, toUInt64(0) AS events, "
            f"{_NO_VISITORS} AS visitors WHERE 0"
            + when_all(
                "clean_days day_rows",
                " UNION ALL SELECT toDateTime(day, 'UTC') AS hour, pageviews, events, visitors FROM rollup_traffic_days "
                f"FINAL WHERE project_id = {{project:String}} AND {member('day', 'clean_days')} AND {by_day('day')}"
                f"{_bots(query)}",
            )
            + when_all(
                "clean_hours",
                " UNION ALL SELECT hour, pageviews, events, visitors FROM rollup_traffic_hours FINAL "
                f"WHERE project_id = {{project:String}} AND {member('hour', hours_left, derived=True)} "
                f"AND {_inside('hour')} AND NOT {member('hour', _BUCKET_EDGES)}{_bots(query)}",
            )
            + (_half_rows(query) if halves else "")  # the statement names unflagged_hours only then
            + _cut_rows("rollup_traffic_cuts", "hour, pageviews, events, visitors", _bots(query))
            + _raw_hours(
                sql,
                query,
                f"toDateTime({raw_time}, 'UTC') AS hour, countIf(type = 'pageView') AS pageviews, "
                "count() AS events, uniqState(visitor_id) AS visitors",
                group_by="hour",
                also=sorted(set(edges) - set(halves)),
                # Half edges without their rows (compacted before migration 020) and dirty ones (dirty_hours).
                more=(
                    f"arrayIntersect({_HALF_EDGES}, {_UNFLAGGED[0]})",
                    f"arrayIntersect({{half_edge_days:Array(Date)}}, {_UNFLAGGED[1]})",
                )
                if halves
                else None,
            )
        )
        unflagged = f", {UNFLAGGED_MARK}" if halves else ""
        return (
            f"{_with_period_split(sql, query)}{unflagged} SELECT toUnixTimestamp({bucket.format(t='r.hour')}) AS bucket, "
            "sum(r.pageviews) AS pageviews, sum(r.events) AS events, uniqMerge(r.visitors) AS visitors "
            f"FROM ({hours}) AS r GROUP BY bucket ORDER BY bucket"
        )
    return (
        f"SELECT toUnixTimestamp({bucket.format(t='timestamp')}) AS bucket, countIf(type = 'pageView') AS pageviews, "
        f"count() AS events, uniq(visitor_id) AS visitors FROM events FINAL {_raw_where(sql, query)} "
        "GROUP BY bucket ORDER BY bucket"
    )


def _dimension_values(columns: Sequence[str]) -> str:
    """``ARRAY JOIN`` of the session rows ``s``: a (column, value) pair per column of ``columns``, so that one
    pass over the sessions groups them by every dimension asked for (names from :data:`DIMENSIONS` only)."""
    pairs = ", ".join(f"('{column}', toString(s.{column}))" for column in columns)
    return f"ARRAY JOIN [{pairs}] AS dv"


def _dims_prefixes(sql: Sql) -> str:
    """What a breakdown's ``WITH`` adds to the split for the breakdowns' prefix (``dims_prefixes``,
    ``dims_hours``): the day prefixes, without the overview's rules for partial and whole days."""
    sql.params.update(partial_days=[], whole_days=[])
    return f", {PREFIXES_MARK}"


# Each dimension's rows, best first, ``limit`` of them.
_TOP_BY_DIMENSION = "LIMIT {limit:UInt32} BY dimension"


def session_breakdowns(sql: Sql, query: StatsQuery, columns: Sequence[str], *, rollups: bool) -> str:
    """Top values of the session ``columns`` (``dimension``: the column, ``value``) by visitors, in one
    statement: the sessions a breakdown reads one by one are read once for all of them."""
    if rollups:
        with_ = (
            f"{_with_sessions_split(sql, query, rollups)}{_dims_prefixes(sql)}"
            + when_all("dims_hours", f", {_TAIL_FROM}")
            + " "
        )
        return (
            f"{with_}SELECT r.dimension AS dimension, r.value AS value, uniqCombinedMerge(14)(r.visitors) AS visitors, "
            f"sum(r.sessions) AS sessions, sum(r.pageviews) AS pageviews FROM ({_dimension_rows(sql, query, columns)}) "
            "AS r GROUP BY dimension, value HAVING sessions > 0 "
            f"ORDER BY dimension, visitors DESC, pageviews DESC, value {_TOP_BY_DIMENSION}"
        )
    return (
        "SELECT dv.1 AS dimension, dv.2 AS value, uniq(s.visitor_id) AS visitors, count() AS sessions, "
        f"sum(s.pageviews) AS pageviews FROM ({sessions_source(sql, query, rollups=False)}) AS s "
        f"{_dimension_values(columns)} GROUP BY dimension, value "
        f"ORDER BY dimension, visitors DESC, pageviews DESC, value {_TOP_BY_DIMENSION}"
    )


def page_breakdown(sql: Sql, query: StatsQuery, *, rollups: bool) -> str:
    """Top pages by page views."""
    if rollups:
        # Visitor states merged for every page once (uniqCombined's are small), then ranked.
        return (
            f"{_with_period_split(sql, query)}{_dims_prefixes(sql)} "
            "SELECT r.url_path AS value, uniqCombinedMerge(14)(r.visitors) AS visitors, "
            f"sum(r.pageviews) AS pageviews FROM ({_page_rows(sql, query)}) AS r "
            f"GROUP BY value ORDER BY pageviews DESC, value LIMIT {{limit:UInt32}}"
        )
    return (
        "SELECT url_path AS value, uniq(visitor_id) AS visitors, count() AS pageviews FROM events FINAL "
        f"{_raw_where(sql, query, content=_PAGE_VIEWS)} "
        "GROUP BY value ORDER BY pageviews DESC, value LIMIT {limit:UInt32}"
    )


def _dimension_rows(sql: Sql, query: StatsQuery, columns: Sequence[str]) -> str:
    """Per-(dimension, value) rows of the session ``columns`` covering the period's sessions: the sessions
    of clean days that started in hours the period holds whole summed by the day tier
    (``rollup_session_dims``), the others one by one (:func:`sessions_source`). A value whose newest row is
    a zero (no session has it any longer) counts nothing. A day the period holds whole is read from its row
    per value (start hour :data:`WHOLE_ROW_HOUR`): one visitor sketch per value and day to merge, not one
    per start hour."""
    _bind_whole_days(sql, query)
    sql.params["dimensions"] = list(columns)
    whole = _whole_day("day")
    dimensions = "dimension IN {dimensions:Array(String)}"
    return (
        "SELECT dimension, value, sessions, pageviews, visitors FROM rollup_session_dims FINAL "
        f"WHERE project_id = {{project:String}} AND {dimensions} AND {member('day', 'clean_days')} "
        f"AND (({whole} AND start_hour = {WHOLE_ROW_HOUR}) OR (NOT ({whole}) AND {_inside('start_hour')})){_bots(query)} "
        + when_all(
            "dims_hours",
            " UNION ALL SELECT dimension, value, sessions, pageviews, visitors FROM rollup_prefix_dims FINAL "
            f"WHERE project_id = {{project:String}} AND {member('through', 'dims_prefixes', derived=True)} "
            f"AND {dimensions} AND end_slot < tail_from{_bots(query)} ",
        )
        + "UNION ALL SELECT dv.1 AS dimension, dv.2 AS value, count() AS sessions, sum(s.pageviews) AS pageviews, "
        f"uniqCombinedState(14)(s.visitor_id) AS visitors FROM ({sessions_source(sql, query, rollups=True)}) AS s "
        f"{_dimension_values(columns)} GROUP BY dimension, value"
    )


def _page_rows(sql: Sql, query: StatsQuery) -> str:
    """Per-page rows covering the period: clean whole UTC days from the daily rollup, the hours of a
    day still going before its prefix from the prefix's (``dims_prefixes``, the session breakdowns' one:
    its hours the period holds; migration 021), other clean whole hours from the hourly one, everything
    else from raw events."""
    _bind_whole_days(sql, query)
    project = f"project_id = {{project:String}}{_bots(query)}"
    # Clean hours neither the daily rollup nor the prefix answers.
    hours = f"{member('hour', _hours_left(' AND NOT has(dims_hours, h)'), derived=True)} AND {_inside('hour')}"
    return (
        f"SELECT '' AS url_path, toUInt64(0) AS pageviews, {EMPTY_SKETCH} AS visitors WHERE 0"
        + when_all(
            "clean_days",
            " UNION ALL SELECT url_path, pageviews, visitors FROM rollup_page_days FINAL "
            f"WHERE {project} AND {_clean_whole_day('day')}",
        )
        + when_all(
            "dims_hours",
            " UNION ALL SELECT url_path, pageviews, visitors FROM rollup_prefix_pages FINAL "
            f"WHERE {project} AND {member('through', 'dims_prefixes', derived=True)}",
        )
        + when_all(
            "clean_hours",
            f" UNION ALL SELECT url_path, pageviews, visitors FROM rollup_page_hours FINAL WHERE {project} AND {hours}",
        )
        + _cut_rows("rollup_page_cuts", "url_path, pageviews, visitors", _bots(query))
        + _raw_hours(
            sql,
            query,
            "url_path, count() AS pageviews, uniqCombinedState(14)(visitor_id) AS visitors",
            where=f" AND {_PAGE_VIEWS}",
            group_by="url_path",
        )
    )


def _raw_where(sql: Sql, query: StatsQuery, *, table: str = "", content: str = "") -> str:
    """The period's events: the ``PREWHERE`` keeps the rows of the period (and the copy margin) before
    ``FINAL`` merges, so the last five minutes do not merge the whole day; the exact bounds apply after.
    ``table`` qualifies the columns (``e.``) where the query's own aliases share their names.
    ``content`` is a condition on what every copy of an event has alike (type, path, properties), so it
    may drop rows before the merge too."""
    also = f" AND {content}" if content else ""
    return (
        f"PREWHERE timestamp >= {START} - {COPY_MARGIN} AND timestamp < {END} + {COPY_MARGIN}{also} "
        f"WHERE {table}project_id = {{project:String}} AND {_exact_period(table)}"
        f"{sql.event_filters(query, table=table)}"
    )


# The types rollup_event_hours sums (migration 019), as conditions on ``type``: clicks, errors, custom events.
_CLICKS, _ERRORS, _CUSTOM = "type = 'click'", "type = 'error'", "type NOT IN ('pageView', 'click', 'error')"


def _event_rows(sql: Sql, query: StatsQuery, types: str, rolled: str, raw: str, *, by: str, rollups: bool) -> str:
    """Per-``by`` rows (``props``, ``type``) of the period's events whose type meets ``types``: ``raw``
    columns grouped by ``by``; with ``rollups`` (columns ``rolled``), clean whole UTC days from
    ``rollup_event_days``, other clean whole hours from ``rollup_event_hours`` and only the rest raw,
    whole: these rows have no cuts (``use_cuts``). An hour compacted without these rows (before migration
    019) is read raw (:data:`chalicelib.rollups.split.UNFLAGGED_MARK`); its day is not clean (the day tier
    waits for every hour of a day to have them)."""
    if not rollups:
        return f"SELECT {raw} FROM events FINAL {_raw_where(sql, query, content=types)} GROUP BY {by}"
    sql.params["use_cuts"] = False
    _bind_whole_days(sql, query)
    project = f"project_id = {{project:String}} AND {types}{_bots(query)}"
    return (
        f"{_with_period_split(sql, query)}, {UNFLAGGED_MARK} SELECT * FROM (SELECT {rolled} "
        f"FROM rollup_event_hours WHERE 0"
        + when_all(
            "clean_days",
            f" UNION ALL SELECT {rolled} FROM rollup_event_days FINAL WHERE {project} AND {_clean_whole_day('day')} ",
        )
        + when_all(
            "clean_hours",
            f" UNION ALL SELECT {rolled} FROM rollup_event_hours FINAL WHERE {project} "
            f"AND {member('hour', _hours_left(), derived=True)} AND {_inside('hour')} "
            f"AND NOT {member('hour', _UNFLAGGED[0])}",
        )
        + _raw_hours(sql, query, raw, where=f" AND {types}", group_by=by, more=_UNFLAGGED)
        + ")"
    )


def errors(sql: Sql, query: StatsQuery, *, rollups: bool) -> str:
    """Errors per message and source, with a stack of the latest. Counted per ``props`` first, as
    :func:`clicks` does: the JSON is read once per distinct error, not per error sent (a busy day's 100,000
    errors: 169 -> 78 ms); with ``rollups``, those of clean hours summed by compaction (migration 019)."""
    per_props = _event_rows(
        sql,
        query,
        _ERRORS,
        "props, events AS errors, sessions AS session_keys, first_at AS first, last_at AS last",
        "props, count() AS errors, uniqExactState(session_key) AS session_keys, min(timestamp) AS first, "
        "max(timestamp) AS last",
        by="props",
        rollups=rollups,
    )
    return (
        "SELECT JSONExtractString(props, 'message') AS message, JSONExtractString(props, 'source') AS source, "
        "sum(errors) AS count, uniqExactMerge(session_keys) AS sessions, "
        "toUnixTimestamp64Milli(min(first)) AS first_seen, toUnixTimestamp64Milli(max(last)) AS last_seen, "
        f"argMax(JSONExtractString(props, 'stack'), last) AS sample_stack FROM ({per_props}) "
        "GROUP BY message, source ORDER BY count DESC, message, source LIMIT {limit:UInt32}"
    )


def _counted(sql: Sql, query: StatsQuery, types: str, by: str, *, rollups: bool) -> tuple[str, str]:
    """Per-``by`` rows (``by``, ``events``, ``visitors``) of the events whose type meets ``types``
    (:func:`_event_rows`), and the function merging their visitors: with ``rollups`` ``uniqCombined(14)``
    sketches as the pages' (a busy day's 200 hourly ``uniq`` states of clicks, up to 65,536 hashes each,
    took 60-90 ms to merge), raw ``uniq`` states."""
    state, merge = ("uniqCombinedState(14)", "uniqCombinedMerge(14)") if rollups else ("uniqState", "uniqMerge")
    raw = f"{by}, count() AS events, {state}(visitor_id) AS visitors"
    return _event_rows(sql, query, types, f"{by}, events, visitors", raw, by=by, rollups=rollups), merge


def custom_events(sql: Sql, query: StatsQuery, *, rollups: bool) -> str:
    """Custom events per name; with ``rollups``, those of clean hours counted by compaction (migration 019)."""
    per_type, merge = _counted(sql, query, _CUSTOM, "type", rollups=rollups)
    return (
        f"SELECT type AS name, sum(events) AS count, {merge}(visitors) AS visitors FROM ({per_type}) "
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


def clicks(sql: Sql, query: StatsQuery, *, rollups: bool) -> str:
    """Clicks per element. A click's ``props`` describe its element, so there are about as many distinct
    ``props`` as elements: counted per ``props`` first, the JSON is read once per element, not per click
    (a month of 2.1 M clicks: 1,661 -> 356 ms); with ``rollups``, those of clean hours summed by
    compaction (migration 019)."""
    per_props, merge = _counted(sql, query, _CLICKS, "props", rollups=rollups)
    return (
        "SELECT JSONExtractString(props, 'tag') AS tag, JSONExtractString(props, 'id') AS element_id, "
        "JSONExtractString(props, 'text') AS text, JSONExtractString(props, 'href') AS href, "
        f"sum(events) AS count, {merge}(visitors) AS visitors FROM ({per_props}) "
        "GROUP BY tag, element_id, text, href ORDER BY count DESC, text, href, element_id, tag LIMIT {limit:UInt32}"
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


# Goals: what converted, per goal and per breakdown row; funnels. All from `events FINAL` (each event once).
_SPLIT_TIME = "fromUnixTimestamp64Milli({split_at:Int64}, 'UTC')"


def goals(sql: Sql, query: StatsQuery, goals: tuple[Goal, ...], split_at: datetime) -> str:
    """Per goal, visitors who converted and conversions, and all visitors, for the events from
    ``split_at`` on (``current``) and before it: both periods in one read."""
    sql.params["split_at"] = int(split_at.timestamp() * 1000)
    figures = ["uniq(visitor_id) AS visitors"]
    for number, goal in enumerate(goals):
        matched = goal_condition(goal, sql.params, f"g{number}")
        figures += [f"uniqIf(visitor_id, {matched}) AS g{number}_visitors", f"countIf({matched}) AS g{number}_events"]
    return (
        f"SELECT timestamp >= {_SPLIT_TIME} AS current, {', '.join(figures)} "
        f"FROM events FINAL {_raw_where(sql, query)} GROUP BY current"
    )


def _converted(sql: Sql, goal: Goal) -> str:
    """True for an event (``e.``) that reaches ``goal``."""
    return goal_condition(goal, sql.params, "goal", table="e.")


def goal_session_breakdowns(sql: Sql, query: StatsQuery, columns: Sequence[str], goal: Goal) -> str:
    """Visitors and the visitors who converted (a session that reached ``goal``) per value of each session
    column of ``columns`` (``dimension``), by the sessions started in the period, read once for all."""
    sessions = sessions_source(sql, query, rollups=False, extra=f", max({_converted(sql, goal)}) AS converted")
    return (
        "SELECT dv.1 AS dimension, dv.2 AS value, uniq(s.visitor_id) AS visitors, "
        "uniqIf(s.visitor_id, s.converted) AS converted_visitors, count() AS sessions, "
        f"countIf(s.converted) AS converted_sessions FROM ({sessions}) AS s {_dimension_values(columns)} "
        f"GROUP BY dimension, value ORDER BY dimension, converted_visitors DESC, visitors DESC, value {_TOP_BY_DIMENSION}"
    )


def goal_page_breakdown(sql: Sql, query: StatsQuery, goal: Goal) -> str:
    """Visitors and the visitors who converted per page, by the sessions that viewed it."""
    return (
        "SELECT page AS value, uniq(s.visitor_id) AS visitors, uniqIf(s.visitor_id, s.converted) AS converted_visitors, "
        "count() AS sessions, countIf(s.converted) AS converted_sessions FROM ("
        f"SELECT argMin(e.visitor_id, e.timestamp) AS visitor_id, max({_converted(sql, goal)}) AS converted, "
        "groupUniqArrayIf(e.url_path, e.type = 'pageView') AS pages "
        f"FROM events AS e FINAL {_raw_where(sql, query, table='e.')} GROUP BY e.session_key"
        ") AS s ARRAY JOIN s.pages AS page GROUP BY value "
        "ORDER BY converted_visitors DESC, visitors DESC, value LIMIT {limit:UInt32}"
    )


# A visitor as a number: the same grouping as ``visitor_id`` (the anonymous id, else the visitor hash) with
# a 64-bit key, which groups a million visitors faster than their strings.
_VISITOR_KEY = "if(anonymous_id != '', cityHash64(anonymous_id), visitor_hash)"


def funnel(sql: Sql, query: StatsQuery, steps: list[Goal], window_s: int) -> str:
    """Per visitor who reached the first step in the period: the furthest step reached in order within
    the window (``windowFunnel``), and when each step was first reached after the one before, from
    their first first-step event (``t1``..``tN``, 0 when not reached, epoch ms); summed per step."""
    sql.params.update(window_s=window_s, window_ms=window_s * 1000)
    conditions = [goal_condition(step, sql.params, f"s{n}") for n, step in enumerate(steps, 1)]
    at = "toUInt64(toUnixTimestamp64Milli(timestamp))"
    per_visitor = [
        # Seconds are precise enough for the window and cheaper to order than milliseconds.
        f"windowFunnel({{window_s:UInt64}})(toDateTime(timestamp), {', '.join(conditions)}) AS level",
        f"minIf({at}, {conditions[0]}) AS t1",
        *(f"groupArrayIf({at}, {c}) AS a{n}" for n, c in enumerate(conditions[1:], 2)),
    ]
    chain = ["t1"] + [  # 0 once a step is not reached: the later ones are not either
        f"if(t{n - 1} = 0, 0, arrayMin(arrayFilter(x -> x > t{n - 1} AND x <= t1 + {{window_ms:UInt64}}, a{n}))) AS t{n}"
        for n in range(2, len(steps) + 1)
    ]
    any_step = f"({' OR '.join(conditions)})"
    figures = [f"countIf(level >= {n}) AS reached_{n}" for n in range(1, len(steps) + 1)] + [
        f"quantileExactInclusiveIf(0.5)(t{n} - t{n - 1}, level >= {n} AND t{n} > 0) AS median_ms_{n}"
        for n in range(2, len(steps) + 1)
    ]
    return (
        f"SELECT {', '.join(figures)} FROM (SELECT level, {', '.join(chain)} FROM ("
        f"SELECT {', '.join(per_visitor)} FROM events FINAL {_raw_where(sql, query)} AND {any_step} "
        f"GROUP BY {_VISITOR_KEY}) WHERE level >= 1)"
    )
