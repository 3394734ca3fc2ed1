"""Rollups recomputed from deduplicated events, by the hour: the exactly-once read side.

The tables are those of migration ``008``. Ingest marks the (project, UTC
hour) pairs it writes in ``rollup_hour_changes`` before the insert and again
after it succeeded (:func:`mark_changed`). :func:`compact` works in four tiers:

- the **hour tier** recomputes changed hours from ``events FINAL`` into
  ``rollup_session_hours`` (a session's part within the hour),
  ``rollup_traffic_hours`` and ``rollup_page_hours``;
- the **day tier** merges the hours of a day whose changed hours are all
  compacted into ``rollup_session_days`` and ``rollup_page_days``, so a month
  of reports reads one row per session and page per day, and sums the
  day's sessions by the hour they started in (``rollup_session_starts``)
  for the overview, with the day's visitors and traffic in one row each;
- the **prefix tier** does the last for the day still going: for each project,
  the day of its newest dirty hour (the current one, under traffic), it sums
  the sessions of the clean hours before that day's first dirty hour
  (``rollup_prefix_starts``, migration ``011``), with the visitors of all of them
  in one row (migration ``016``), so the overview of today under steady
  traffic adds only the sessions that run on past them one by one;
- the **cut tier** compacts an hour that keeps changing (the current one, under
  traffic) up to a cut, into ``rollup_*_cuts`` (migration ``014``), so reports
  read only its events from the cut on raw: minutes, not the hour. The cut
  lies the late margin and the copy margin before the settled marks it
  covers, so an insert marked after them brings no event before it unless
  the insert is *late* (events minutes older than its mark: a redelivery, a
  client back online); a late mark after its cover makes a cut unusable
  until the next round covers it.

A round of any tier takes units (hours, days, prefixes) in a budget of event rows,
records a *pending* generation with a lease for them, writes their rows,
then records the generation *done* with the newest change it covers. A unit
is *clean* when a done generation covers its newest change; reports read
clean units from the rollups and every other hour from ``events FINAL``
(:data:`chalicelib.rollups.sql.SPLIT`, evaluated inside each report's statement).

Why it holds whatever the redelivery or the timing:

- ``events FINAL`` counts an event id once however often it was inserted;
- a rollup row is only read for a unit whose every change it covers. Marks
  come before the insert, and again after it, so an insert that lands after a
  round read the hour leaves it dirty. Compaction takes only hours quiet for
  ``settle_s``, and inserts run with a server-side ``max_execution_time``
  below it (:data:`INSERT_TIME_LIMIT_S`), so none is still running then;
- rollup tables are ``ReplacingMergeTree(gen)`` on their natural key, read with
  ``FINAL``: the newest generation of each row wins and older ones go away in
  merges. Nothing is deleted. A round that died half way (its Lambda timed
  out) left rows only for units it had not made clean, which the next round
  replaces: generations grow with time;
- leases make overlapping runs split the work (the lowest generation holding
  a live lease on a unit keeps it); a lease that expires is taken over.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from chalicelib.cluster_ddl import alter
from chalicelib.rollups.split import CACHE as SPLITS
from chalicelib.rollups.sql import (
    ALL_HOURS_STATE,
    BOOK_TIMES,
    COPY_MARGIN,
    CUT_FRESH,
    DAY_DONE,
    DAY_DONE_FLAGS,
    EMPTY_SKETCH,
    EXACT_HOUR,
    HOUR_DONE_FLAGS,
    HOUR_SESSION_COLUMNS,
    HOUR_SESSION_NAMES,
    LATE_MARK,
    PREFIX_DONE,
    PREFIX_DONE_FLAGS,
    ROLLUP_TIMES,
    SESSION_DIMENSIONS,
    SESSION_MERGE_COLUMNS,
    SESSION_NAMES,
    WHOLE_ROW_HOUR,
    copy_hours,
    covered_by,
    day_of,
    end_slot,
    exact,
    final_settings,
    session_figures,
    usable_cut,
)

logger = logging.getLogger(__name__)

DEFAULT_SETTLE_S = 60.0
DEFAULT_INTERVAL_S = 15.0
# Server-side bound on an event insert: below the settle time, so no insert is still running when a
# round reads an hour whose newest mark is that old.
INSERT_TIME_LIMIT_S = 30
# Event rows one round of the hour tier reads (at least one hour whatever its size).
ROUND_ROWS = 2_000_000
# The day tier reads rollup rows, about a quarter of the events' number: a budget this many times larger.
DAY_BUDGET_FACTOR = 4
MAX_UNITS_PER_ROUND = 200
MAX_ROUNDS = 1_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NEVER = datetime(2200, 1, 1, tzinfo=UTC)
LEASE_S = 300.0
ROLLUP_TABLES = tuple(ROLLUP_TIMES)
# Per rollup table: the ``has()`` arguments selecting the rows of some hours and of their days.
_REBUILT_ROWS = {
    table: "{hours:Array(DateTime('UTC'))}, hour" if column == "hour" else f"{{days:Array(Date)}}, {day_of(column)}"
    for table, column in ROLLUP_TIMES.items()
}
BOOK_TABLES = tuple(BOOK_TIMES)

_HOURS = "{units:Array(Tuple(String, DateTime('UTC')))}"
_DAYS = "{units:Array(Tuple(String, Date))}"


# The hours of a round from `events FINAL`: the days (and the copy margin) pruned before the merge, and
# with ``content`` (a condition every copy of an event meets alike, say on its type) the other rows too.
def _round_events(content: str = "") -> str:
    hours = " OR ".join(f"(project_id, {hour}) IN {_HOURS}" for hour in copy_hours())
    prewhere = f"({hours}) AND {content}" if content else hours
    return (
        f"FROM events FINAL PREWHERE {prewhere} WHERE has({{days:Array(Date)}}, toDate(timestamp)) "
        f"AND (project_id, {EXACT_HOUR}) IN {_HOURS}"
    )


_ROUND_EVENTS = _round_events()
_PAGE_VIEWS, _OTHER_EVENTS = "type = 'pageView'", "type != 'pageView'"
_HOUR_STATEMENTS = (
    f"INSERT INTO rollup_session_hours (project_id, hour, {HOUR_SESSION_NAMES}, gen) "
    f"SELECT project_id, toStartOfHour(timestamp) AS hour, {HOUR_SESSION_COLUMNS}, {{gen:UInt64}} AS gen "
    f"{_ROUND_EVENTS} GROUP BY project_id, hour, session_key",
    "INSERT INTO rollup_traffic_hours (project_id, hour, is_bot, gen, pageviews, events, visitors) "
    "SELECT project_id, toStartOfHour(timestamp) AS hour, is_bot, {gen:UInt64}, countIf(type = 'pageView'), "
    f"count(), uniqState(visitor_id) {_ROUND_EVENTS} GROUP BY project_id, hour, is_bot",
    "INSERT INTO rollup_page_hours (project_id, hour, is_bot, url_path, gen, pageviews, visitors) "
    "SELECT project_id, toStartOfHour(timestamp) AS hour, is_bot, url_path, {gen:UInt64}, count(), "
    f"uniqCombinedState(14)(visitor_id) {_round_events(_PAGE_VIEWS)} "
    "GROUP BY project_id, hour, is_bot, url_path",
    # Each half of the hour (migration 020), for the days of half-hour zones that start inside it.
    "INSERT INTO rollup_traffic_halves (project_id, hour, half, is_bot, gen, pageviews, events, visitors) "
    "SELECT project_id, toStartOfHour(timestamp) AS hour, toUInt8(toMinute(timestamp) >= 30) AS half, is_bot, "
    f"{{gen:UInt64}}, countIf(type = 'pageView'), count(), uniqState(visitor_id) {_ROUND_EVENTS} "
    "GROUP BY project_id, hour, half, is_bot",
    # Clicks and errors by what they were sent with, custom events by name (migration 019).
    "INSERT INTO rollup_event_hours (project_id, hour, type, is_bot, props, gen, events, visitors, sessions, "
    "first_at, last_at) SELECT project_id, toStartOfHour(timestamp) AS hour, type, is_bot, "
    "if(type IN ('click', 'error'), props, '') AS sent, {gen:UInt64}, count(), "
    "uniqCombinedStateIf(14)(visitor_id, type != 'error'), uniqExactStateIf(session_key, type = 'error'), "
    f"min(timestamp), max(timestamp) {_round_events(_OTHER_EVENTS)} GROUP BY project_id, hour, type, is_bot, sent",
)
# (project, day, bot) for each unit of a day round and both bot values.
_DAY_SLOTS = f"(SELECT u.1 AS project_id, u.2 AS day, toUInt8(arrayJoin([0, 1])) AS is_bot FROM (SELECT arrayJoin({_DAYS}) AS u)) AS k"
# The session breakdowns' grouping sets (rollup_session_dims, rollup_prefix_dims): a session counts once in
# each, by the value it has in one dimension; ``grouping(name) = 0`` tells a row's set (one pass: 0.81 ->
# 0.48 s for the busy bench day against an ARRAY JOIN of (dimension, value) pairs).
_DIMENSION_OF_SET = "multiIf({}, '{}')".format(
    ", ".join(f"grouping({name}) = 0, '{name}'" for name in SESSION_DIMENSIONS[:-1]), SESSION_DIMENSIONS[-1]
)
_VALUE_OF_SET = "multiIf({}, {})".format(
    ", ".join(f"grouping({name}) = 0, {name}" for name in SESSION_DIMENSIONS[:-1]), SESSION_DIMENSIONS[-1]
)
_DIMENSION_COLUMNS = ", ".join(f"toString(d.{name}) AS {name}" for name in SESSION_DIMENSIONS)


def _dimension_sums(table: str, unit: str, hour: str, sessions: str, units: str) -> tuple[str, str]:
    """The statements writing a tier's session breakdown sums into ``table``: the sessions (``sessions``, a
    ``SELECT`` of per-session rows ``d`` with ``unit`` and ``hour`` among its columns) summed by (dimension,
    value, ``hour``, bot); then zeros for the keys an older generation of the same units wrote and this one
    didn't (a value no session has left), so that none survives it under FINAL."""
    key = f"project_id, {unit}, dimension, {hour}, is_bot, value"
    columns = f"INSERT INTO {table} ({key}, gen, sessions, pageviews, visitors) "
    sets = ", ".join(f"(project_id, {unit}, {hour}, is_bot, {name})" for name in SESSION_DIMENSIONS)
    of_units = f"(project_id, {unit}) IN {units}"
    return (
        f"{columns}SELECT project_id, {unit}, {_DIMENSION_OF_SET}, {hour}, is_bot, {_VALUE_OF_SET}, {{gen:UInt64}}, "
        f"count(), sum(pageviews), uniqCombinedState(14)(visitor_id) FROM (SELECT d.project_id AS project_id, "
        f"d.{unit} AS {unit}, d.{hour} AS {hour}, d.is_bot AS is_bot, d.visitor_id AS visitor_id, "
        f"d.pageviews AS pageviews, {_DIMENSION_COLUMNS} FROM ({sessions}) AS d) GROUP BY GROUPING SETS ({sets})",
        f"{columns}SELECT {key}, {{gen:UInt64}}, 0, 0, {EMPTY_SKETCH} FROM {table} WHERE {of_units} "
        f"AND gen < {{gen:UInt64}} AND sessions > 0 AND ({key}) NOT IN "
        f"(SELECT {key} FROM {table} WHERE {of_units} AND gen = {{gen:UInt64}}) GROUP BY {key}",
    )


_DAY_DIMENSIONS = _dimension_sums(
    "rollup_session_dims",
    "day",
    "start_hour",
    f"SELECT *, toStartOfHour(started_at) AS start_hour FROM rollup_session_days FINAL WHERE (project_id, day) IN {_DAYS}",
    _DAYS,
)
_DAY_STATEMENTS = (
    f"INSERT INTO rollup_session_days (project_id, day, {SESSION_NAMES}, gen) "
    f"SELECT p.project_id AS project_id, toDate(p.hour) AS day, p.session_id AS session_id, {SESSION_MERGE_COLUMNS}, "
    f"{{gen:UInt64}} FROM rollup_session_hours AS p FINAL WHERE (p.project_id, toDate(p.hour)) IN {_DAYS} "
    "GROUP BY project_id, day, session_id",
    "INSERT INTO rollup_page_days (project_id, day, is_bot, url_path, gen, pageviews, visitors) "
    "SELECT project_id, toDate(hour) AS day, is_bot, url_path, {gen:UInt64}, sum(pageviews), "
    f"uniqCombinedMergeState(14)(visitors) FROM rollup_page_hours FINAL WHERE (project_id, toDate(hour)) IN {_DAYS} "
    "GROUP BY project_id, day, is_bot, url_path",
    # After the session rows: every (start hour, bot) of each day, zeros included (see migration 008).
    "INSERT INTO rollup_session_starts (project_id, day, start_hour, is_bot, gen, sessions, pageviews, bounces, "
    "sessions_with_pageviews, duration_ms, visitors) "
    "SELECT k.project_id, k.day, k.start_hour, k.is_bot, {gen:UInt64}, a.sessions, a.pageviews, a.bounces, "
    "a.sessions_with_pageviews, a.duration_ms, a.visitors FROM "
    f"(SELECT u.1 AS project_id, u.2 AS day, toDateTime(u.2, 'UTC') + toIntervalHour(slot % 24) AS start_hour, "
    f"toUInt8(intDiv(slot, 24)) AS is_bot FROM (SELECT arrayJoin({_DAYS}) AS u, arrayJoin(range(48)) AS slot)) AS k "
    "LEFT JOIN (SELECT d.project_id AS project_id, d.day AS day, toStartOfHour(d.started_at) AS start_hour, "
    f"d.is_bot AS is_bot, {session_figures('d')} FROM rollup_session_days AS d FINAL "
    f"WHERE (d.project_id, d.day) IN {_DAYS} GROUP BY project_id, day, start_hour, is_bot) AS a "
    "ON k.project_id = a.project_id AND k.day = a.day AND k.start_hour = a.start_hour AND k.is_bot = a.is_bot",
    # The sessions summed by (dimension, value, start hour, bot) for the session breakdowns (migration 017)...
    _DAY_DIMENSIONS[0],
    # ...each value's whole day in one row, for reports of periods that hold the day whole...
    "INSERT INTO rollup_session_dims (project_id, day, dimension, start_hour, is_bot, value, gen, sessions, "
    "pageviews, visitors) "
    f"SELECT project_id, day, dimension, {WHOLE_ROW_HOUR}, is_bot, value, {{gen:UInt64}}, sum(sessions), "
    "sum(pageviews), uniqCombinedMergeState(14)(visitors) FROM rollup_session_dims "
    f"WHERE (project_id, day) IN {_DAYS} AND gen = {{gen:UInt64}} AND start_hour != {WHOLE_ROW_HOUR} "
    "GROUP BY project_id, day, dimension, is_bot, value",
    # ...and zeros for the keys an older generation wrote and this one didn't.
    _DAY_DIMENSIONS[1],
    # Clicks, errors and custom events (migration 019).
    "INSERT INTO rollup_event_days (project_id, day, type, is_bot, props, gen, events, visitors, sessions, first_at, "
    "last_at) SELECT project_id, toDate(hour) AS day, type, is_bot, props, {gen:UInt64}, sum(events), "
    "uniqCombinedMergeState(14)(visitors), uniqExactMergeState(sessions), min(first_at), max(last_at) "
    f"FROM rollup_event_hours FINAL WHERE (project_id, toDate(hour)) IN {_DAYS} "
    "GROUP BY project_id, day, type, is_bot, props",
    # Whole days in one row (both bot slots, empty states included): the day's session visitors, its traffic.
    "INSERT INTO rollup_session_day_visitors (project_id, day, is_bot, gen, visitors) "
    f"SELECT k.project_id, k.day, k.is_bot, {{gen:UInt64}}, a.visitors FROM {_DAY_SLOTS} "
    "LEFT JOIN (SELECT project_id, day, is_bot, uniqState(visitor_id) AS visitors FROM rollup_session_days FINAL "
    f"WHERE (project_id, day) IN {_DAYS} GROUP BY project_id, day, is_bot) AS a "
    "ON k.project_id = a.project_id AND k.day = a.day AND k.is_bot = a.is_bot",
    "INSERT INTO rollup_traffic_days (project_id, day, is_bot, gen, pageviews, events, visitors) "
    f"SELECT k.project_id, k.day, k.is_bot, {{gen:UInt64}}, a.pageviews, a.events, a.visitors FROM {_DAY_SLOTS} "
    "LEFT JOIN (SELECT project_id, toDate(hour) AS day, is_bot, sum(pageviews) AS pageviews, sum(events) AS events, "
    "uniqMergeState(visitors) AS visitors FROM rollup_traffic_hours FINAL "
    f"WHERE (project_id, toDate(hour)) IN {_DAYS} GROUP BY project_id, day, is_bot) AS a "
    "ON k.project_id = a.project_id AND k.day = a.day AND k.is_bot = a.is_bot",
)
# Rollup rows are written once per generation: never drop one as a repeated block.
_INSERT_SETTINGS = {"insert_deduplicate": 0}

# Per (project, day): the newest change of any hour, whether every changed hour is clean (and written with
# every row the day's are merged from: an hour compacted before migration 019 has no rollup_event_hours
# rows until the hour tier writes it again), the day's cover.
_DAY_STATE = (
    "SELECT h.project_id AS project_id, toDate(h.hour) AS day, max(h.last_change) AS last_change, "
    "sum(h.rows) AS rows, min(h.covered >= h.last_change AND h.written >= h.last_change) AS hours_clean, "
    "any(d.written) AS written, "
    "any(d.covered) AS covered "
    f"FROM ({ALL_HOURS_STATE}) AS h LEFT JOIN ({covered_by('rollup_day_gens', 'day', DAY_DONE)}) AS d "
    "ON h.project_id = d.project_id AND toDate(h.hour) = d.day "
    "GROUP BY project_id, day"
)
# Per project, the prefix of the day of its newest dirty hour (the current hour, under traffic): it ends
# at that day's first dirty hour (``through``) and holds at least one marked hour; with the newest change
# and the rows of the hours before it. The marks are read once, grouped by day.
_PREFIX_STATE = (
    "SELECT p.project_id AS project_id, p.through AS through, p.last_change AS last_change, p.rows AS rows, "
    "g.written AS written, g.covered AS covered FROM "
    "(SELECT project_id, through, arrayMax(arrayMap(x -> x.2, before)) AS last_change, "
    "arraySum(arrayMap(x -> x.3, before)) AS rows FROM "
    "(SELECT project_id, through, arrayFilter(x -> x.1 < through, hours) AS before FROM "
    "(SELECT h.project_id AS project_id, toDate(h.hour) AS day, minIf(h.hour, h.covered < h.last_change) AS through, "
    "groupArray((h.hour, h.last_change, h.rows)) AS hours "
    f"FROM ({ALL_HOURS_STATE}) AS h GROUP BY project_id, day HAVING countIf(h.covered < h.last_change) > 0 "
    "ORDER BY day DESC LIMIT 1 BY project_id)) WHERE notEmpty(before)) AS p "
    f"LEFT JOIN ({covered_by('rollup_prefix_gens', 'through', PREFIX_DONE)}) AS g "
    "ON p.project_id = g.project_id AND p.through = g.through"
)
_PREFIXES = "{units:Array(Tuple(String, DateTime('UTC')))}"
# Each prefix's sessions: the parts of its hours, grouped by these.
_PREFIX_SESSION_KEY = "p.project_id AS project_id, w.through AS through, p.session_id AS session_id"


def _prefix_hours(table: str) -> str:
    """``FROM`` the rows ``p`` of the hourly rollup ``table`` in each prefix's hours, with the prefix ``w``."""
    return (
        f"FROM {table} AS p FINAL INNER JOIN (SELECT u.1 AS project_id, u.2 AS through "
        f"FROM (SELECT arrayJoin({_PREFIXES}) AS u)) AS w ON p.project_id = w.project_id "
        "AND toDate(p.hour) = toDate(w.through) "
        f"WHERE (p.project_id, toDate(p.hour)) IN (SELECT u.1, toDate(u.2) FROM (SELECT arrayJoin({_PREFIXES}) AS u)) "
        "AND p.hour < w.through"
    )


_PREFIX_PARTS = f"{_prefix_hours('rollup_session_hours')} GROUP BY project_id, through, session_id"
# The session breakdowns' sums of each prefix (migration 018), by when each session's last part in it ended.
_PREFIX_DIMENSIONS = _dimension_sums(
    "rollup_prefix_dims",
    "through",
    "end_slot",
    f"SELECT {_PREFIX_SESSION_KEY}, {SESSION_MERGE_COLUMNS}, {end_slot('max(p.ended_at)', 'w.through')} AS end_slot "
    f"{_PREFIX_PARTS}",
    _PREFIXES,
)
# The sessions of each prefix's hours merged, summed by (start hour, bot): every slot of the day, zeros included.
_PREFIX_STATEMENTS = (
    "INSERT INTO rollup_prefix_starts (project_id, through, start_hour, is_bot, gen, sessions, pageviews, bounces, "
    "sessions_with_pageviews, duration_ms, visitors) "
    "SELECT k.project_id, k.through, k.start_hour, k.is_bot, {gen:UInt64}, a.sessions, a.pageviews, a.bounces, "
    "a.sessions_with_pageviews, a.duration_ms, a.visitors FROM "
    "(SELECT u.1 AS project_id, u.2 AS through, toStartOfDay(u.2) + toIntervalHour(slot % 24) AS start_hour, "
    f"toUInt8(intDiv(slot, 24)) AS is_bot FROM (SELECT arrayJoin({_PREFIXES}) AS u, arrayJoin(range(48)) AS slot)) AS k "
    "LEFT JOIN (SELECT d.project_id AS project_id, d.through AS through, toStartOfHour(d.started_at) AS start_hour, "
    f"d.is_bot AS is_bot, {session_figures('d')} FROM "
    f"(SELECT {_PREFIX_SESSION_KEY}, max(p.is_bot) AS is_bot, argMin(p.visitor_id, p.started_at) AS visitor_id, "
    f"min(p.started_at) AS started_at, max(p.ended_at) AS ended_at, sum(p.pageviews) AS pageviews {_PREFIX_PARTS}) AS d "
    "GROUP BY project_id, through, start_hour, is_bot) AS a "
    "ON k.project_id = a.project_id AND k.through = a.through AND k.start_hour = a.start_hour AND k.is_bot = a.is_bot",
    # Then the visitors of each (prefix, bot) in one row (migration 016), merged from the rows just written.
    "INSERT INTO rollup_prefix_starts (project_id, through, start_hour, is_bot, gen, sessions, pageviews, bounces, "
    "sessions_with_pageviews, duration_ms, visitors) "
    f"SELECT k.project_id, k.through, {WHOLE_ROW_HOUR}, k.is_bot, {{gen:UInt64}}, 0, 0, 0, 0, 0, a.visitors FROM "
    "(SELECT u.1 AS project_id, u.2 AS through, toUInt8(bot) AS is_bot "
    f"FROM (SELECT arrayJoin({_PREFIXES}) AS u, arrayJoin([0, 1]) AS bot)) AS k "
    "LEFT JOIN (SELECT project_id, through, is_bot, uniqMergeState(visitors) AS visitors FROM rollup_prefix_starts "
    f"WHERE (project_id, through) IN {_PREFIXES} AND gen = {{gen:UInt64}} AND start_hour != {WHOLE_ROW_HOUR} "
    "GROUP BY project_id, through, is_bot) AS a "
    "ON k.project_id = a.project_id AND k.through = a.through AND k.is_bot = a.is_bot",
    *_PREFIX_DIMENSIONS,
    # The top pages of each prefix's hours (migration 021), as the day tier sums a day's.
    "INSERT INTO rollup_prefix_pages (project_id, through, is_bot, url_path, gen, pageviews, visitors) "
    "SELECT p.project_id AS project_id, w.through AS through, p.is_bot AS is_bot, p.url_path AS url_path, "
    "{gen:UInt64}, sum(p.pageviews), uniqCombinedMergeState(14)(p.visitors) "
    f"{_prefix_hours('rollup_page_hours')} GROUP BY project_id, through, is_bot, url_path",
)
# Pending generations never done whose lease still runs (``>``: the units they hold) or ran out
# (``<=``: rounds that died).
_UNDONE = (
    "SELECT project_id, {unit}, gen FROM {gens} WHERE state = 'pending' AND lease_until {lease} now64(3) "
    "AND (project_id, {unit}, gen) NOT IN (SELECT project_id, {unit}, gen FROM {gens} WHERE state = 'done')"
)


@dataclass(frozen=True)
class Tier:
    """One level of compaction: the unit it works in, its generations table, when a unit is ready."""

    unit: str
    gens: str
    state: str
    ready: str
    statements: tuple[str, ...]
    units_param: str
    # Columns a done generation of this tier is recorded with as 1 besides the common ones (rollups.sql.all_done).
    done_flags: tuple[str, ...] = ()

    def undone(self, lease: str) -> str:
        return _UNDONE.format(unit=self.unit, gens=self.gens, lease=lease)

    def candidates(self) -> str:
        return (
            f"SELECT s.project_id, s.{self.unit}, s.last_change, s.rows FROM ({self.state}) AS s "
            f"WHERE s.last_change > s.written AND {self.ready} "
            f"AND (s.project_id, s.{self.unit}) NOT IN (SELECT project_id, {self.unit} FROM ({self.undone('>')})) "
            f"ORDER BY s.{self.unit} DESC, s.project_id LIMIT {{limit:UInt32}}"
        )


HOUR_TIER = Tier(
    "hour",
    "rollup_hour_gens",
    ALL_HOURS_STATE,
    "s.last_change <= now64(3) - toIntervalMillisecond({settle:UInt64})",
    _HOUR_STATEMENTS,
    _HOURS,
    HOUR_DONE_FLAGS,
)
DAY_TIER = Tier(
    "day",
    "rollup_day_gens",
    _DAY_STATE,
    "s.hours_clean = 1",  # its hours waited for the settle time already
    _DAY_STATEMENTS,
    _DAYS,
    DAY_DONE_FLAGS,
)
# Prefixes wait for nothing but their hours, which are clean already.
PREFIX_TIER = Tier(
    "through",
    "rollup_prefix_gens",
    _PREFIX_STATE,
    "1",
    _PREFIX_STATEMENTS,
    _PREFIXES,
    PREFIX_DONE_FLAGS,
)

# The cut tier (migration 014): the rows of an hour's events before a cut, while the hour keeps changing.
# A cut is due when it takes at least this much more of its hour than the last one still usable.
CUT_STEP = "toIntervalMinute(5)"
# Done cuts whose rows reports may still read (a stale one, its rows about to expire, holds no new cut back).
_CUT_GENS = f"SELECT project_id, hour, covered_to, through FROM rollup_cut_gens WHERE state = 'done' AND recorded_at >= {CUT_FRESH}"
# Per (project, hour) changed too recently to settle: the cover (the settle time ago: every insert marked
# before it is done), the newest change and late mark, the rows.
_CHANGING_HOURS = (
    "SELECT project_id, hour, now64(3) - toIntervalMillisecond({settle:UInt64}) AS cover, "
    "max(changed_at) AS last_change, max(late_change) AS late, sum(rows) AS rows FROM rollup_hour_changes "
    "GROUP BY project_id, hour HAVING last_change > cover"
)
# The same with the cut it allows (never after ``cut_at``, which a benchmark of a past day sets to its
# "now") and what the hour tier wrote.
_CUT_STATE = (
    "SELECT c.project_id AS project_id, c.hour AS hour, c.cover AS cover, c.rows AS rows, "
    f"least(toStartOfMinute(least(c.cover, {{cut_at:DateTime64(3, 'UTC')}}) - {LATE_MARK} - {COPY_MARGIN}), "
    "toDateTime64(c.hour, 3, 'UTC') + toIntervalHour(1)) AS through, c.late AS late, c.last_change AS last_change, "
    f"h.written AS written FROM ({_CHANGING_HOURS}) AS c "
    f"LEFT JOIN ({covered_by('rollup_hour_gens', 'hour')}) AS h ON c.project_id = h.project_id AND c.hour = h.hour"
)
# The events of one hour before its cut, every copy of them read before FINAL keeps one.
_CUT_EVENTS = (
    "FROM events FINAL PREWHERE project_id = {project:String} "
    f"AND timestamp >= {{hour:DateTime('UTC')}} - {COPY_MARGIN} AND timestamp < {{through:DateTime64(3, 'UTC')}} + {COPY_MARGIN} "
    f"WHERE {EXACT_HOUR} = {{hour:DateTime('UTC')}} AND {exact()} < {{through:DateTime64(3, 'UTC')}}"
)
_CUT_STATEMENTS = (
    f"INSERT INTO rollup_session_cuts (project_id, hour, gen, {HOUR_SESSION_NAMES}) "
    f"SELECT project_id, {{hour:DateTime('UTC')}}, {{gen:UInt64}}, {HOUR_SESSION_COLUMNS} {_CUT_EVENTS} "
    "GROUP BY project_id, session_key",
    "INSERT INTO rollup_traffic_cuts (project_id, hour, gen, is_bot, pageviews, events, visitors) "
    "SELECT project_id, {hour:DateTime('UTC')}, {gen:UInt64}, is_bot, countIf(type = 'pageView'), count(), "
    f"uniqState(visitor_id) {_CUT_EVENTS} GROUP BY project_id, is_bot",
    "INSERT INTO rollup_page_cuts (project_id, hour, gen, is_bot, url_path, pageviews, visitors) "
    "SELECT project_id, {hour:DateTime('UTC')}, {gen:UInt64}, is_bot, url_path, count(), "
    f"uniqCombinedState(14)(visitor_id) {_CUT_EVENTS} AND type = 'pageView' GROUP BY project_id, is_bot, url_path",
)
CUT_TIER = Tier("hour", "rollup_cut_gens", _CUT_STATE, "1", _CUT_STATEMENTS, _HOURS)
_CUT_CANDIDATES = (
    "SELECT s.project_id, s.hour, s.cover, s.rows, s.through FROM "
    f"({_CUT_STATE}) AS s LEFT JOIN ({_CUT_GENS}) AS k ON s.project_id = k.project_id AND s.hour = k.hour "
    "WHERE s.last_change > s.written AND s.last_change > s.cover AND s.late <= s.cover "
    f"AND s.through >= toDateTime64(s.hour, 3, 'UTC') + {CUT_STEP} "
    f"AND (s.project_id, s.hour) NOT IN (SELECT project_id, hour FROM ({CUT_TIER.undone('>')})) "
    "GROUP BY s.project_id, s.hour, s.cover, s.rows, s.through "
    f"HAVING s.through >= maxIf(k.through, k.covered_to >= s.late) + {CUT_STEP} "
    "ORDER BY s.hour DESC, s.project_id LIMIT {limit:UInt32}"
)


@dataclass(frozen=True)
class CompactResult:
    hours: int
    days: int
    generation: int | None
    prefixes: int = 0
    cuts: int = 0

    def summary(self) -> str:
        """What was compacted, for people."""
        return f"{self.hours} hour(s), {self.days} day(s), {self.prefixes} day prefix(es) and {self.cuts} cut(s)"


def mark_changed(
    client: Any,
    counts: Mapping[tuple[str, datetime], int],
    *,
    database: str | None = None,
    earliest: Mapping[tuple[str, datetime], datetime] | None = None,
) -> None:
    """Mark (project, UTC hour) pairs changed, with the rows written (0 for the mark before an insert)
    and, from ingest, the earliest event of each; a mark without one counts as late (migration 014)."""
    table = f"{database}.rollup_hour_changes" if database else "rollup_hour_changes"
    if earliest is None:
        rows = [[project, hour, n] for (project, hour), n in counts.items()]
        columns: tuple[str, ...] = ("project_id", "hour", "rows")
    else:
        rows = [[project, hour, n, earliest[(project, hour)]] for (project, hour), n in counts.items()]
        columns = ("project_id", "hour", "rows", "earliest")
    if rows:
        client.insert(table, rows, column_names=columns)


def live_rounds(client: Any, project_id: str) -> int:
    """Rounds of any tier holding a live lease on some unit of the project (running, or died recently)."""
    return int(
        client.query(
            f"SELECT (SELECT count() FROM ({HOUR_TIER.undone('>')}) WHERE project_id = {{p:String}}) "
            f"+ (SELECT count() FROM ({DAY_TIER.undone('>')}) WHERE project_id = {{p:String}}) "
            f"+ (SELECT count() FROM ({PREFIX_TIER.undone('>')}) WHERE project_id = {{p:String}}) "
            f"+ (SELECT count() FROM ({CUT_TIER.undone('>')}) WHERE project_id = {{p:String}})",
            parameters={"p": project_id},
        ).result_rows[0][0]
    )


def rebuild(
    client: Any,
    project_id: str,
    hours: Iterable[datetime],
    *,
    wait_s: float = LEASE_S + 30,
    sleep: Any = time.sleep,
    cluster: str | None = None,
) -> None:
    """Make compaction rebuild these hours (and their days) from scratch, after rows vanished from
    ``events`` (an erasure). Rows only ever replace rows with the same key, so a key that no longer
    exists (a session, a page only that person saw) must be deleted, and no round may write it back:

    1. the hours are marked changed, so reports read them raw from now on;
    2. rounds holding a live lease of the project are waited for (they may have read the old events);
    3. every rollup row of the hours and of their days is deleted;
    4. the hours are marked again: rounds that started before 3 left them dirty, later ones read what
       remains. Compaction rebuilds them once they have been quiet for its settle time.
    """
    hours = sorted(set(hours))
    if not hours:
        return
    mark_changed(client, {(project_id, hour): 0 for hour in hours})
    deadline = time.monotonic() + wait_s
    while live_rounds(client, project_id) and time.monotonic() < deadline:
        sleep(1.0)
    params = {"p": project_id, "hours": hours, "days": sorted({_day(h) for h in hours})}
    for table, rows in _REBUILT_ROWS.items():
        client.command(
            f"{alter(table, cluster)} DELETE WHERE project_id = {{p:String}} AND has({rows})",
            parameters=params,
            settings={"mutations_sync": 2},
        )
    mark_changed(client, {(project_id, hour): 0 for hour in hours})


def _day(unit: date | datetime) -> date:
    return unit.date() if isinstance(unit, datetime) else unit


def _new_generation() -> int:
    """Later rounds get larger numbers (milliseconds, then 16 random bits against ties)."""
    return (time.time_ns() // 1_000_000) << 16 | random.getrandbits(16)


def _pick(rows: Iterable[tuple[Any, ...]], budget: int) -> list[tuple[Any, ...]]:
    """Units in order until their rows reach the budget; at least one, however large."""
    picked: list[tuple[Any, ...]] = []
    total = 0
    for row in rows:
        if picked and total + int(row[3]) > budget:
            break
        picked.append(row)
        total += int(row[3])
    return picked


def _claim(client: Any, tier: Tier, units: list[tuple[Any, ...]], gen: int, lease_s: float) -> list[tuple[Any, ...]]:
    """Record a pending generation with a lease on ``units``; keep those no other live lease holds.

    A unit is kept only when this claim is the only live one on it. Of two runs claiming a unit at once,
    the one whose claim was recorded later sees the other's, so at most one keeps it, whatever their
    generation numbers (generations come from each machine's clock, not from the order of the claims).
    When both see each other, both let go; the units they let go are recorded done with nothing covered,
    so their leases hold nothing up, and the next run takes them.
    """
    until = datetime.fromtimestamp(time.time() + lease_s, UTC)
    client.insert(
        tier.gens,
        [[project, unit, gen, "pending", _EPOCH, until, _EPOCH] for project, unit, *_ in units],
        column_names=_gen_columns(tier),
    )
    claims = client.query(  # per unit: the live claims, and whether this one is among them
        f"SELECT project_id, {tier.unit}, count(), max(gen = {{gen:UInt64}}) FROM ({tier.undone('>')}) "
        f"WHERE (project_id, {tier.unit}) IN {tier.units_param} GROUP BY project_id, {tier.unit}",
        parameters={"units": [(u[0], u[1]) for u in units], "gen": gen},
    ).result_rows
    sole = {(r[0], r[1]) for r in claims if int(r[2]) == 1 and r[3]}
    lost = [u for u in units if (u[0], u[1]) not in sole]
    if lost:
        client.insert(
            tier.gens,
            [[project, unit, gen, "done", _EPOCH, _EPOCH, _EPOCH] for project, unit, *_ in lost],
            column_names=_gen_columns(tier),
        )
    return [u for u in units if (u[0], u[1]) in sole]


def _gen_columns(tier: Tier) -> tuple[str, ...]:
    return ("project_id", tier.unit, "gen", "state", "covered_to", "lease_until", "visible_at")


def _round(
    client: Any, tier: Tier, *, settle_s: float, budget: int, lease_s: float, replica_lag_s: float
) -> tuple[int, int | None]:
    """One round of ``tier``: returns the units it compacted and its generation.

    The generation is done once its rows are written; readers use it ``replica_lag_s`` later (0 on one
    server; on a cluster the time every replica takes to fetch the rows).
    """
    found = client.query(
        tier.candidates(), parameters={"settle": int(settle_s * 1000), "limit": MAX_UNITS_PER_ROUND}
    ).result_rows
    units = _pick(found, budget)
    if not units:
        return 0, None
    gen = _new_generation()
    claimed = _claim(client, tier, units, gen, lease_s)
    if len(claimed) < len(units):
        logger.info(
            "%d %s(s) claimed by another run at the same time: left to it", len(units) - len(claimed), tier.unit
        )
    units = claimed
    if not units:
        return 0, None
    params = {"gen": gen, "units": [(u[0], u[1]) for u in units], "days": sorted({_day(u[1]) for u in units})}
    settings = _INSERT_SETTINGS | final_settings(client)
    for statement in tier.statements:
        client.command(statement, parameters=params, settings=settings)
    visible = datetime.fromtimestamp(time.time() + replica_lag_s, UTC)
    flags = [1] * len(tier.done_flags)
    client.insert(
        tier.gens,
        [[project, unit, gen, "done", last_change, _EPOCH, visible, *flags] for project, unit, last_change, _ in units],
        column_names=(*_gen_columns(tier), *tier.done_flags),
    )
    return len(units), gen


def _cut_round(
    client: Any, *, settle_s: float, budget: int, lease_s: float, replica_lag_s: float, cut_at: datetime | None
) -> int:
    """One round of the cut tier: the hours still changing, each compacted up to the cut its settled
    marks allow; returns how many it cut. Each unit's rows are written under the round's generation
    beside the earlier cuts', which reports may still be reading."""
    parameters = {"settle": int(settle_s * 1000), "limit": MAX_UNITS_PER_ROUND, "cut_at": cut_at or _NEVER}
    found = client.query(_CUT_CANDIDATES, parameters=parameters).result_rows
    units = _pick(found, budget)
    if not units:
        return 0
    gen = _new_generation()
    units = _claim(client, CUT_TIER, units, gen, lease_s)
    settings = _INSERT_SETTINGS | final_settings(client)
    for project, hour, _, _, through in units:
        params = {"gen": gen, "project": project, "hour": hour, "through": through}
        for statement in CUT_TIER.statements:
            client.command(statement, parameters=params, settings=settings)
    visible = datetime.fromtimestamp(time.time() + replica_lag_s, UTC)
    client.insert(
        CUT_TIER.gens,
        [[project, hour, gen, "done", cover, _EPOCH, visible, through] for project, hour, cover, _, through in units],
        column_names=(*_gen_columns(CUT_TIER), "through"),
    )
    return len(units)


def compact(
    client: Any,
    *,
    settle_s: float = DEFAULT_SETTLE_S,
    budget_rows: int = ROUND_ROWS,
    lease_s: float = LEASE_S,
    replica_lag_s: float = 0.0,
    cut_at: datetime | None = None,
) -> CompactResult:
    """One round of each tier: changed hours quiet for ``settle_s`` (newest first, up to ``budget_rows``
    event rows), then days whose hours are all compacted, then prefixes of the days still going, then
    cuts of the hours still changing (none later than ``cut_at``, when given).

    ``client`` must have the TrackFlow database as its default and may write.
    Safe to run anywhere at any time, also several at once.
    """
    started = time.monotonic()
    common: dict[str, Any] = {"settle_s": settle_s, "lease_s": lease_s, "replica_lag_s": replica_lag_s}
    hours, generation = _round(client, HOUR_TIER, budget=budget_rows, **common)
    days, day_gen = _round(client, DAY_TIER, budget=budget_rows * DAY_BUDGET_FACTOR, **common)
    prefixes, _ = _round(client, PREFIX_TIER, budget=budget_rows * DAY_BUDGET_FACTOR, **common)
    cuts = _cut_round(client, budget=budget_rows, cut_at=cut_at, **common)
    done = CompactResult(hours, days, generation if generation is not None else day_gen, prefixes, cuts)
    if hours or days or prefixes or cuts:  # one line per round that did something
        logger.info("compacted %s in %.1f s", done.summary(), time.monotonic() - started)
        # Reports in this process (`trackflow dev`, the tests) read what it compacted at once, not after
        # the splits they kept expire; elsewhere a kept split reads those hours raw meanwhile, as exactly.
        SPLITS.clear()
    return done


def compact_all(
    client: Any,
    *,
    settle_s: float = DEFAULT_SETTLE_S,
    deadline: float | None = None,
    budget_rows: int = ROUND_ROWS,
    replica_lag_s: float = 0.0,
    cut_at: datetime | None = None,
) -> CompactResult:
    """Compact round after round until nothing waits or ``deadline`` (monotonic) passed; the totals."""
    hours = days = prefixes = cuts = 0
    generation = None
    for _ in range(MAX_ROUNDS):  # hours keep changing under traffic: never loop for ever
        if deadline is not None and time.monotonic() >= deadline:
            break
        done = compact(client, settle_s=settle_s, budget_rows=budget_rows, replica_lag_s=replica_lag_s, cut_at=cut_at)
        hours, days, prefixes = hours + done.hours, days + done.days, prefixes + done.prefixes
        cuts += done.cuts
        generation = done.generation or generation
        if done.hours == 0 and done.days == 0 and done.prefixes == 0 and done.cuts == 0:
            break
    return CompactResult(hours, days, generation, prefixes, cuts)


@dataclass(frozen=True)
class Backlog:
    """How far behind compaction is (all zero when nothing waits)."""

    hours: int  # changed hours not yet covered
    rows: int  # event rows in them (redeliveries included)
    oldest_hour_age_s: float  # seconds since the start of the oldest of them
    pending_age_s: float  # how long past the settle time the longest-waiting one has waited
    clean_hours: int
    days: int  # days whose hours are all clean but that wait for the day tier
    clean_days: int
    interrupted: int  # pending generations whose lease ran out before they were done
    # Of the hours changing too recently to settle, the most seconds of one that reports read raw: from
    # its newest usable cut (or its start) to now (or its end). Under steady traffic about ten minutes
    # of the current hour; an hour when the cut tier falls behind, or every mark is late (ingest delayed).
    raw_tail_s: float = 0.0
    # Clean hours compaction writes again because a migration added rollup rows their generation lacks
    # (rollups.sql.HOUR_DONE_FLAGS): every report but those rows' reads them; those read them raw meanwhile.
    rewrite_hours: int = 0


# Per hour changing too recently to settle: where reports start reading it raw, and where that ends.
_RAW_TAIL = (
    "SELECT max(dateDiff('millisecond', greatest(toDateTime64(c.hour, 3, 'UTC'), c.cut), "
    "least(now64(3), toDateTime64(c.hour, 3, 'UTC') + toIntervalHour(1)))) FROM "
    f"(SELECT s.hour AS hour, maxIf(k.through, {usable_cut('k', 's.late')}) AS cut FROM ({_CHANGING_HOURS}) AS s "
    "LEFT JOIN rollup_cut_gens AS k ON s.project_id = k.project_id AND s.hour = k.hour "
    "GROUP BY s.project_id, s.hour) AS c"
)


def backlog(client: Any, *, settle_s: float = DEFAULT_SETTLE_S) -> Backlog:
    """The compaction backlog, for ``trackflow rollups status``, the metrics and the age alarm."""
    hour = client.query(
        "SELECT countIf(last_change > covered), sumIf(rows, last_change > covered), "
        "dateDiff('millisecond', minIf(hour, last_change > covered), now64(3)), "
        "maxIf(dateDiff('millisecond', last_change, now64(3)), last_change > covered), "
        "countIf(last_change <= covered), countIf(last_change <= covered AND last_change > written) "
        f"FROM ({HOUR_TIER.state})"
    ).result_rows[0]
    day = client.query(
        f"SELECT countIf(last_change > covered AND hours_clean = 1), countIf(last_change <= covered) FROM ({DAY_TIER.state})"
    ).result_rows[0]
    interrupted = client.query(
        f"SELECT (SELECT count() FROM ({HOUR_TIER.undone('<=')})) + (SELECT count() FROM ({DAY_TIER.undone('<=')})) "
        f"+ (SELECT count() FROM ({PREFIX_TIER.undone('<=')})) + (SELECT count() FROM ({CUT_TIER.undone('<=')}))"
    ).result_rows[0][0]
    raw_tail = client.query(_RAW_TAIL, parameters={"settle": int(settle_s * 1000)}).result_rows[0][0]
    waiting = int(hour[0])
    return Backlog(
        hours=waiting,
        rows=int(hour[1] or 0),
        oldest_hour_age_s=float(hour[2]) / 1000 if waiting else 0.0,
        pending_age_s=max(0.0, float(hour[3] or 0) / 1000 - settle_s) if waiting else 0.0,
        clean_hours=int(hour[4]),
        days=int(day[0]),
        clean_days=int(day[1]),
        interrupted=int(interrupted),
        raw_tail_s=float(raw_tail or 0) / 1000,
        rewrite_hours=int(hour[5]),
    )
