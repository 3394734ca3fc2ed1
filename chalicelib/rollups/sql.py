"""SQL both sides of the rollups share: compaction writes with it, reports read with it.

- The per-session columns, from raw events (a session within an hour or a
  day) and merged from hourly parts, so a session running over several hours
  counts once with its first and last page.
- :data:`SPLIT`: which hours and days of a report's window the rollups answer,
  as one scalar subquery: read before a report, or inside it
  (:mod:`chalicelib.rollups.split`), and :data:`SPLIT_HOLDS`, the report's
  check that a split read before it still holds.
- :func:`dirty_prewhere`: reading only some hours of ``events FINAL``. The
  table is sorted by day, so ``FINAL`` over a filtered hour would still merge
  the whole day; the ``PREWHERE`` keeps the rows of those hours (and a margin
  either side, which holds every stored copy of an event whose resend was
  stamped a few milliseconds apart) before the merge, and the exact hour test
  runs after it, on the copy ``FINAL`` kept (:data:`FINAL_SETTINGS`).
"""

from __future__ import annotations

from typing import Any

# A session's part within one group of raw events (an hour for the rollups, a day for raw reports).
_SESSION_ATTRIBUTES = """
    max(referrer_domain) AS referrer_domain, max(utm_source) AS utm_source,
    max(utm_medium) AS utm_medium, max(utm_campaign) AS utm_campaign,
    any(browser) AS browser, any(os) AS os, any(device_type) AS device_type, any(country) AS country"""
# What the overview needs of a session (or a part of one), from raw events; and the names of the columns.
# A session's visitor is its first event's (a session may change visitor id, say on consent), so that its
# parts, merged in any order, and the prefix that counted its earlier part name the same visitor.
SESSION_CORE_COLUMNS = """
    session_key AS session_id, argMin(visitor_id, timestamp) AS visitor_id, max(is_bot) AS is_bot,
    min(timestamp) AS started_at, max(timestamp) AS ended_at,
    countIf(type = 'pageView') AS pageviews"""
SESSION_CORE_NAMES = "session_id, visitor_id, is_bot, started_at, ended_at, pageviews"
RAW_SESSION_COLUMNS = f"""{SESSION_CORE_COLUMNS}, count() AS events,
    argMinIf(url_path, timestamp, type = 'pageView') AS entry_page,
    argMaxIf(url_path, timestamp, type = 'pageView') AS exit_page,{_SESSION_ATTRIBUTES}"""
# The same within one hour, with the times of the first and last page view for merging parts.
HOUR_SESSION_COLUMNS = f"""{SESSION_CORE_COLUMNS}, count() AS events,
    minIf(timestamp, type = 'pageView') AS entry_at, argMinIf(url_path, timestamp, type = 'pageView') AS entry_page,
    maxIf(timestamp, type = 'pageView') AS exit_at, argMaxIf(url_path, timestamp, type = 'pageView') AS exit_page,
    {_SESSION_ATTRIBUTES}"""
HOUR_SESSION_NAMES = (
    f"{SESSION_CORE_NAMES}, events, entry_at, entry_page, exit_at, "
    "exit_page, referrer_domain, utm_source, utm_medium, utm_campaign, browser, os, device_type, country"
)
# Hourly parts (``p``) of one session merged: grouped by day and session id.
SESSION_MERGE_COLUMNS = """
    argMin(p.visitor_id, p.started_at) AS visitor_id, max(p.is_bot) AS is_bot,
    min(p.started_at) AS started_at, max(p.ended_at) AS ended_at,
    sum(p.pageviews) AS pageviews, sum(p.events) AS events,
    argMinIf(p.entry_page, p.entry_at, p.pageviews > 0) AS entry_page,
    argMaxIf(p.exit_page, p.exit_at, p.pageviews > 0) AS exit_page,
    max(p.referrer_domain) AS referrer_domain, max(p.utm_source) AS utm_source,
    max(p.utm_medium) AS utm_medium, max(p.utm_campaign) AS utm_campaign,
    any(p.browser) AS browser, any(p.os) AS os, any(p.device_type) AS device_type, any(p.country) AS country"""


def session_figures(t: str) -> str:
    """The overview's sums over per-session rows of table alias ``t``, named as rollup_session_starts'
    columns (qualified: a bare ``pageviews`` would name the ``sum(pageviews)`` beside it)."""
    return (
        f"count() AS sessions, sum({t}.pageviews) AS pageviews, countIf({t}.pageviews = 1) AS bounces, "
        f"countIf({t}.pageviews > 0) AS sessions_with_pageviews, "
        f"sum(dateDiff('millisecond', {t}.started_at, {t}.ended_at)) AS duration_ms, "
        f"uniqState({t}.visitor_id) AS visitors"
    )


SESSION_NAMES = (
    "session_id, visitor_id, is_bot, started_at, ended_at, pageviews, events, entry_page, exit_page, "
    "referrer_domain, utm_source, utm_medium, utm_campaign, browser, os, device_type, country"
)
# The session columns the day tier sums sessions by (rollup_session_dims, migration 017): every one a
# report breaks sessions down by.
SESSION_DIMENSIONS = (
    "entry_page",
    "exit_page",
    "referrer_domain",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "browser",
    "os",
    "device_type",
    "country",
)
# An empty visitor sketch, of the rollups' ``uniqCombined(14)`` columns (pages, session breakdowns).
EMPTY_SKETCH = "arrayReduce('uniqCombinedState(14)', emptyArrayString())"


# Each rollup table, and the time column its rows are of: an ``hour``, a UTC ``day`` or a prefix's end
# (``through``). Compaction's rebuild and retention select rows by it.
ROLLUP_TIMES = {
    "rollup_session_hours": "hour",
    "rollup_traffic_hours": "hour",
    "rollup_page_hours": "hour",
    "rollup_traffic_halves": "hour",
    "rollup_event_hours": "hour",
    "rollup_session_days": "day",
    "rollup_page_days": "day",
    "rollup_event_days": "day",
    "rollup_session_starts": "day",
    "rollup_session_dims": "day",
    "rollup_prefix_starts": "through",
    "rollup_prefix_dims": "through",
    "rollup_prefix_pages": "through",
    "rollup_session_day_visitors": "day",
    "rollup_traffic_days": "day",
    "rollup_session_cuts": "hour",
    "rollup_traffic_cuts": "hour",
    "rollup_page_cuts": "hour",
}
# The same of compaction's books: the changes it is to work off and the generations it wrote.
BOOK_TIMES = {
    "rollup_hour_changes": "hour",
    "rollup_hour_gens": "hour",
    "rollup_day_gens": "day",
    "rollup_prefix_gens": "through",
    "rollup_cut_gens": "hour",
}


def day_of(column: str) -> str:
    """The UTC day of a row by its time ``column`` (:data:`ROLLUP_TIMES`, :data:`BOOK_TIMES`)."""
    return column if column == "day" else f"toDate({column})"


def all_done(flags: tuple[str, ...]) -> str:
    """``AND`` conditions: a generation has each of ``flags`` (columns a tier records its done generations
    with, 1 once it writes rows a migration added); generations without one are neither used by reports
    nor taken as written by compaction."""
    return "".join(f" AND {flag} = 1" for flag in flags)


# A done day generation written with its rollup_session_dims rows (migration 017) and its
# rollup_event_days rows (migration 019).
DAY_DONE_FLAGS = ("session_dims", "event_props")
DAY_DONE = all_done(DAY_DONE_FLAGS)


# A done hour generation written with its rollup_event_hours rows (migration 019) and its
# rollup_traffic_halves rows (migration 020). Unlike a day's or a prefix's flags, these only decide what
# compaction writes again (hours and, until they are, their days) and what the reports reading those rows
# read raw (:data:`UNFLAGGED`): every other report may use an hour without them.
HOUR_DONE_FLAGS = ("event_props", "traffic_halves")


# Per (project, hour): the newest change, the rows written, and what done generations cover.
def covered_by(gens: str, unit: str, where: str = "", *, written_flags: tuple[str, ...] = ()) -> str:
    """Per (project, ``unit``): the newest change the done generations of ``gens`` cover. ``written``
    counts every done generation with ``written_flags`` (compaction need not redo it), ``covered`` every
    one readers may use yet (``visible_at``); ``where`` adds ``AND`` conditions to both."""
    written = f"maxIf(covered_to, 1{all_done(written_flags)})" if written_flags else "max(covered_to)"
    return (
        f"SELECT project_id, {unit}, {written} AS written, maxIf(covered_to, visible_at <= now64(3)) AS covered "
        f"FROM {gens} WHERE state = 'done'{where} GROUP BY project_id, {unit}"
    )


HOUR_STATE = (
    "SELECT c.project_id AS project_id, c.hour AS hour, c.last_change AS last_change, c.rows AS rows, "
    "g.written AS written, g.covered AS covered FROM "
    "(SELECT project_id, hour, max(changed_at) AS last_change, sum(rows) AS rows FROM rollup_hour_changes "
    f"{{where}} GROUP BY project_id, hour) AS c "
    f"LEFT JOIN ({covered_by('rollup_hour_gens', 'hour', '{and_where}', written_flags=HOUR_DONE_FLAGS)}) AS g "
    "ON c.project_id = g.project_id AND c.hour = g.hour"
)
# Every (project, hour) with a mark, for compaction.
ALL_HOURS_STATE = HOUR_STATE.format(where="", and_where="")
# A report's window of (project, hour) rows; the per-hour state of its marked hours.
WINDOW_HOURS = (
    "project_id = {project:String} AND hour >= {window_start:DateTime('UTC')} AND hour < {window_end:DateTime('UTC')}"
)
# Of a report's window, the hours whose newest cover readers may use is a generation written without one of
# HOUR_DONE_FLAGS' rows, and their days: the clicks, errors and custom events reports, and a timeseries'
# half-hour edges, read them raw.
UNFLAGGED = (
    "(SELECT tuple(groupArray(hour), groupUniqArray(toDate(hour))) FROM (SELECT hour, "
    "maxIf(covered_to, visible_at <= now64(3)) AS covered, "
    f"maxIf(covered_to, visible_at <= now64(3){all_done(HOUR_DONE_FLAGS)}) AS flagged FROM rollup_hour_gens "
    f"WHERE {WINDOW_HOURS} AND state = 'done' GROUP BY hour HAVING flagged < covered))"
)
# What the ``WITH`` of a statement reading its split itself names them: ``unflagged_hours``, ``unflagged_days``.
UNFLAGGED_NAMES = (
    f"{UNFLAGGED} AS unflagged, tupleElement(unflagged, 1) AS unflagged_hours, "
    "tupleElement(unflagged, 2) AS unflagged_days"
)
# The same read with the split (chalicelib.rollups.split): parameters, so constants. ClickHouse's analyzer
# would resolve the scalar subquery again for every mention (the PREWHERE of raw events makes five), about
# 8 ms each.
UNFLAGGED_PARAMETERS = (
    "CAST({unflagged_hours:Array(UInt32)} AS Array(DateTime('UTC'))) AS unflagged_hours, "
    "{unflagged_days:Array(Date)} AS unflagged_days"
)
_WINDOW_HOURS_STATE = HOUR_STATE.format(where="WHERE " + WINDOW_HOURS, and_where=" AND " + WINDOW_HOURS)
_WINDOW_DAYS = (
    " AND project_id = {project:String} AND day >= toDate({window_start:DateTime('UTC')})"
    " AND day <= toDate({window_end:DateTime('UTC')})"
)
# (clean days, clean hours, dirty hours, days with a dirty hour, clean hours of days not clean, every marked
# hour, and the newest mark of each that a report on this split relies on) of a report's window. Hours are
# Unix seconds and marks epoch milliseconds where a report passes them back as parameters
# (chalicelib.rollups.split): a mark on a clean hour or on any hour of a clean day is relied on; the dirty
# hours of other days are read raw whatever comes, so theirs is the largest Int64.
SPLIT = (
    "(SELECT tuple(groupArrayIf(day, day_clean = 1), arrayFlatten(groupArray(clean)), arrayFlatten(groupArray(dirty)), "
    "groupArrayIf(day, notEmpty(dirty)), arrayFlatten(groupArrayIf(clean, day_clean = 0)), arrayFlatten(groupArray(hours)), "
    "arrayFlatten(groupArray(arrayMap((c, k) -> if(day_clean = 1 OR k, c, 9223372036854775807), changes, cleans)))) FROM "
    "(SELECT toDate(h.hour) AS day, min(d.covered >= h.last_change) AS day_clean, "
    "groupArrayIf(h.hour, h.covered >= h.last_change) AS clean, "
    "groupArrayIf(h.hour, h.covered < h.last_change) AS dirty, groupArray(toUnixTimestamp(h.hour)) AS hours, "
    "groupArray(toUnixTimestamp64Milli(h.last_change)) AS changes, groupArray(h.covered >= h.last_change) AS cleans "
    f"FROM ({_WINDOW_HOURS_STATE}) AS h "
    f"LEFT JOIN ({covered_by('rollup_day_gens', 'day', _WINDOW_DAYS + DAY_DONE)}) AS d ON toDate(h.hour) = d.day "
    "GROUP BY day))"
)
# Resent copies of an event are stamped within this of each other (see the module docstring).
COPY_MARGIN = "toIntervalMinute(5)"
# A mark whose earliest event is older than itself by more than this is *late*: the interval in the
# DEFAULT of ``rollup_hour_changes.late_change`` (migration 014). Cuts are made this far (and the copy
# margin) before the marks they cover, so that an insert that is not late brings no event before a cut.
LATE_MARK = "toIntervalMinute(2)"
# Reports use cuts written since (chalicelib.rollups.compaction's cut tier makes them of the hours still
# changing, every round): their rows expire a day after they were written (migration 014).
CUT_FRESH = "now64(3) - toIntervalHour(12)"


def usable_cut(gen: str, late: str) -> str:
    """The done cut generation of table alias ``gen`` may be read: no late mark of its hour (``late``, the
    newest) came after its cover, readers may use it yet (``visible_at``), and its rows are still there."""
    return (
        f"{gen}.state = 'done' AND {gen}.covered_to >= {late} AND {gen}.visible_at <= now64(3) "
        f"AND {gen}.recorded_at >= {CUT_FRESH}"
    )


# The usable cuts of the window's hours (the cut tier of chalicelib.rollups.compaction): per hour, the
# newest, with its cut and cover (epoch ms).
CUTS = (
    "(SELECT tuple(groupArray(toUnixTimestamp(hour)), groupArray(gen), groupArray(toUnixTimestamp64Milli(through)), "
    "groupArray(toUnixTimestamp64Milli(cover))) FROM (SELECT g.hour AS hour, argMax(g.gen, g.through) AS gen, "
    "max(g.through) AS through, argMax(g.covered_to, g.through) AS cover FROM rollup_cut_gens AS g INNER JOIN "
    "(SELECT project_id, hour, max(late_change) AS late FROM rollup_hour_changes "
    f"WHERE {WINDOW_HOURS} GROUP BY project_id, hour) AS m "
    "ON g.project_id = m.project_id AND g.hour = m.hour WHERE g.project_id = {project:String} "
    "AND g.hour >= {window_start:DateTime('UTC')} AND g.hour < {window_end:DateTime('UTC')} "
    f"AND {usable_cut('g', 'm.late')} GROUP BY g.hour))"
)
# The parts of CUTS, as a report's split has them (chalicelib.rollups.split).
CUT_PARTS = ("cut_hours", "cut_gens", "cut_from", "cut_covers")
# A report reads the cuts it uses (of dirty hours, wholly inside its period) from rollup_*_cuts and their
# hours' events from the cut on raw. ``cut_from``: each one's cut, epoch ms. A statement that reads its
# split itself uses none.
NO_CUTS = (
    "CAST([] AS Array(DateTime('UTC'))) AS cut_hours, CAST([] AS Array(UInt64)) AS cut_gens, "
    "CAST([] AS Array(Int64)) AS cut_from"
)
CUT_PARAMETERS = (
    "CAST({cut_hours:Array(UInt32)} AS Array(DateTime('UTC'))) AS cut_hours, {cut_gens:Array(UInt64)} AS cut_gens, "
    "{cut_from:Array(Int64)} AS cut_from"
)
# What a report's ``WITH`` names the parts of the split, read in the statement itself. ``open_day_hours``:
# the clean hours of days that are not clean (a constant, so a read of hourly rows for them prunes to
# nothing when every day is).
SPLIT_NAMES = (
    f"{SPLIT} AS split, tupleElement(split, 1) AS clean_days, tupleElement(split, 2) AS clean_hours, "
    "tupleElement(split, 3) AS dirty_hours, tupleElement(split, 4) AS dirty_days, "
    f"tupleElement(split, 5) AS open_day_hours, {NO_CUTS}"
)
_HOURS_PARAMETER = "CAST({{{name}:Array(UInt32)}} AS Array(DateTime('UTC')))"
# The split's parts that are hours: passed back as Unix seconds.
SPLIT_HOUR_PARTS = ("clean_hours", "dirty_hours", "open_day_hours")
# The same names for a split read before the statement and passed in as parameters (chalicelib.rollups.split).
SPLIT_PARAMETERS = (
    "{clean_days:Array(Date)} AS clean_days, "
    + ", ".join(f"{_HOURS_PARAMETER.format(name=name)} AS {name}" for name in SPLIT_HOUR_PARTS)
    + f", {{dirty_days:Array(Date)}} AS dirty_days, {CUT_PARAMETERS}"
)
# The parameters of SPLIT_PARAMETERS, in the order of the split's parts; the hours as Unix seconds.
SPLIT_PARTS = ("clean_days", "clean_hours", "dirty_hours", "dirty_days", "open_day_hours", "watch_hours", "watch_marks")
# True while no hour a split relies on has a newer mark than it read (``watch_hours``/``watch_marks``, its
# last two parts): in the statement that uses a split read before it, a string that doesn't parse as a
# number when the split no longer holds, so the statement fails at analysis with ``stale split`` in its
# message, before it reads anything. An hour with no mark when the split was read relies on every mark.
# The cuts it uses hold too: no late mark after a cut's cover (``cut_covers``).
SPLIT_HOLDS = (
    "toUInt8(if((SELECT countIf(toUnixTimestamp64Milli(changed_at) > arrayElement({watch_marks:Array(Int64)}, "
    "indexOf({watch_hours:Array(UInt32)}, toUnixTimestamp(hour))) OR (has({cut_hours:Array(UInt32)}, toUnixTimestamp(hour)) "
    "AND toUnixTimestamp64Milli(late_change) > arrayElement({cut_covers:Array(Int64)}, "
    "indexOf({cut_hours:Array(UInt32)}, toUnixTimestamp(hour))))) FROM rollup_hour_changes "
    "WHERE " + WINDOW_HOURS + ") = 0, '0', 'stale split')) = 0"
)
# A report's period (its ``start`` and ``end`` parameters, epoch ms).
START = "fromUnixTimestamp64Milli({start:Int64}, 'UTC')"
END = "fromUnixTimestamp64Milli({end:Int64}, 'UTC')"
# A done prefix generation written with its visitors row (migration 016), its session breakdown sums
# (migration 018) and its top pages (migration 021).
PREFIX_DONE_FLAGS = ("whole_visitors", "session_dims", "pages")
PREFIX_DONE = all_done(PREFIX_DONE_FLAGS)
# The start hour of a row standing for every start hour of its prefix or day (no session starts then): a
# prefix's visitors row (no sums, the visitors of every session of the prefix, migration 016); a day's row
# per session breakdown value (its sums and visitors, migration 017).
WHOLE_ROW_HOUR = "toDateTime(0, 'UTC')"


def end_slot(ended_at: str, through: str) -> str:
    """The slot a prefix's session breakdown sums (rollup_prefix_dims, migration 018) file a session under
    by ``ended_at``, the end of its last part in the prefix ending at ``through``: the minute in the
    prefix's last hour, the hour before it. Slots only grow with ``ended_at``; reports take the sessions
    ended from a slot on one by one."""
    return f"if({ended_at} < {through} - toIntervalHour(1), toStartOfHour({ended_at}), toStartOfMinute({ended_at}))"


_WINDOW_PREFIXES = (
    " AND project_id = {project:String} AND through > {window_start:DateTime('UTC')}"
    " AND through < {window_end:DateTime('UTC')}"
)
# The overview's day prefixes (rollup_prefix_starts, the prefix tier of chalicelib.rollups.compaction) it may use: per day of
# the window, the longest whose generation covers the newest change of every hour before it, all clean.
PREFIXES = (
    "(SELECT groupArray(t) FROM (SELECT max(through) AS t FROM (SELECT g.through AS through FROM "
    f"({covered_by('rollup_prefix_gens', 'through', _WINDOW_PREFIXES + PREFIX_DONE)}) AS g INNER JOIN "
    f"({_WINDOW_HOURS_STATE}) AS h "
    "ON h.project_id = g.project_id AND toDate(h.hour) = toDate(g.through) WHERE h.hour < g.through "
    "GROUP BY g.through, g.covered HAVING min(h.covered >= h.last_change) = 1 AND g.covered >= max(h.last_change)) "
    "GROUP BY toDate(through)))"
)
# What the overview's ``WITH`` adds to the split's names: the prefixes it uses (none on a day a period
# starts, ends or splits inside: ``partial_days``; none on a clean day, whose sessions are summed whole,
# though its last prefix stays valid), the clean hours they answer, the other clean hours of
# open days, and the hours after a prefix (clean or dirty); and the prefixes of days a period holds whole
# (``whole_days``: their visitors in one row) and of the others. Derived with lambdas: read them with
# ``member(..., derived=True)``.
_PREFIX_DERIVED = (
    "arrayFilter(t -> NOT has({partial_days:Array(Date)}, toDate(t)) AND NOT has(clean_days, toDate(t)), all_prefixes) "
    "AS prefixes, "
    "arrayFilter(h -> h < arrayFirst(t -> toDate(t) = toDate(h), prefixes), open_day_hours) AS prefix_hours, "
    "arrayFilter(h -> NOT has(prefix_hours, h), open_day_hours) AS later_hours, "
    "arrayFilter(h -> has(arrayMap(t -> toDate(t), prefixes), toDate(h)), later_hours) AS after_prefix_hours, "
    "arrayFilter(h -> has(arrayMap(t -> toDate(t), prefixes), toDate(h)), dirty_hours) AS dirty_prefix_hours, "
    "arrayFilter(t -> has({whole_days:Array(Date)}, toDate(t)), prefixes) AS prefixes_whole, "
    "arrayFilter(t -> NOT has({whole_days:Array(Date)}, toDate(t)), prefixes) AS prefixes_split, "
    # The session breakdowns' prefix (migration 018): the newest of a day whose hours before it the period
    # holds; the clean hours before it, the open days' other clean hours, and the hours of its day after it.
    f"arraySlice(arrayReverseSort(arrayFilter(t -> toStartOfDay(t) >= {START} AND t <= {END}, prefixes)), 1, 1) "
    "AS dims_prefixes, "
    "arrayFilter(h -> arrayExists(t -> toDate(t) = toDate(h) AND h < t, dims_prefixes), open_day_hours) AS dims_hours, "
    "arrayFilter(h -> NOT has(dims_hours, h), open_day_hours) AS other_open_hours, "
    "arrayFilter(h -> arrayExists(t -> toDate(t) = toDate(h), dims_prefixes), other_open_hours) AS dims_later_hours, "
    "arrayFilter(h -> arrayExists(t -> toDate(t) = toDate(h), dims_prefixes), dirty_hours) AS dims_dirty_hours"
)
PREFIX_NAMES = f"{PREFIXES} AS all_prefixes, {_PREFIX_DERIVED}"
# The names _PREFIX_DERIVED defines, in its order.
PREFIX_PARTS = (
    "prefixes",
    "prefix_hours",
    "later_hours",
    "after_prefix_hours",
    "dirty_prefix_hours",
    "prefixes_whole",
    "prefixes_split",
    "dims_prefixes",
    "dims_hours",
    "other_open_hours",
    "dims_later_hours",
    "dims_dirty_hours",
)
# The same with a split read before the statement: each of them a parameter (Unix seconds) computed from it
# by chalicelib.rollups.split, so a constant: a statement reads them with ``IN name``, not through a
# subquery (``member(..., derived=True)``) that costs its plan about 2.5 ms each.
PREFIX_PARAMETERS = ", ".join(f"{_HOURS_PARAMETER.format(name=name)} AS {name}" for name in PREFIX_PARTS)
# Reads of ``events FINAL`` run with these. Each partition holds every copy of a key, so FINAL needs
# no merge across partitions. The minmax index on ``timestamp`` skips granules by the statement's
# conditions on it; ClickHouse's exact mode then reads again every granule sharing a key range with
# one kept, so that FINAL meets every copy of a row: on a busy day's hour, 392 granules for the 48
# holding it, a third of the read's time. Our reads don't need that: each keeps every copy itself, by
# testing ``timestamp`` margin-wide (a ``PREWHERE`` with :data:`COPY_MARGIN`, or whole UTC days, which
# the key holds whole) where the index sees it, and the exact bounds on :func:`exact`.
FINAL_SETTINGS = {"do_not_merge_across_partitions_select_final": 1, "use_skip_indexes_if_final_exact_mode": 0}


def final_settings(client: Any) -> dict[str, int]:
    """:data:`FINAL_SETTINGS` that ``client``'s server knows: a server older than the exact mode (chDB's
    26.9 has it; not every server in use does) would refuse the statement, and has no key expansion to
    turn off."""
    known = getattr(client, "server_settings", None)
    return {name: value for name, value in FINAL_SETTINGS.items() if not known or name in known}


def exact(column: str = "timestamp") -> str:
    """``column`` (an event's ``timestamp``) in a test applied after FINAL only: ``identity`` hides it
    from the index, which would otherwise skip a granule holding just a copy stamped across the bound,
    leaving FINAL the other copy (:data:`FINAL_SETTINGS`)."""
    return f"identity({column})"


EXACT_HOUR = f"toStartOfHour({exact()})"


def member(value: str, array: str, *, derived: bool = False) -> str:
    """``value`` is in ``array``, an expression of the split and the parameters: a set built once per
    statement, which also prunes the primary key, where ``has()`` compares every row with every element.

    ``IN array`` where the array is a constant (a part of the split, a parameter). An array ``derived``
    with a lambda (``arrayFilter``) is not folded to a constant and would be computed on every row, so
    it goes through a subquery, evaluated once; each such subquery costs its statement about 2.5 ms to
    plan, so they are kept for what can't be a constant.
    """
    return f"{value} IN (SELECT arrayJoin({array}))" if derived else f"{value} IN {array}"


def copy_hours(column: str = "timestamp") -> tuple[str, ...]:
    """The hour of ``column`` and of the copy margin either side: a row is kept before ``FINAL`` when any
    of them is wanted, so every copy of a resent event reaches the merge."""
    return tuple(f"toStartOfHour({t})" for t in (column, f"{column} - {COPY_MARGIN}", f"{column} + {COPY_MARGIN}"))


def dirty_prewhere(hours: str) -> str:
    """A ``PREWHERE`` condition keeping the rows of ``hours`` (an array expression) and the margin around
    them; of an hour with a cut (``cut_hours``, empty in a statement that uses none) only from the margin
    before its cut.

    It also bounds ``timestamp`` by a constant, the margin before the first hour's cut (or start), where
    the minmax index sees it: the per-row bound can't skip a granule, and every later hour starts after
    that cut. On the busy bench day it halves the raw read of the hour after its cut (27 → 16 ms).
    ``hours`` must be an array without lambdas, which ClickHouse folds to a constant.
    """
    around = " OR ".join(member(hour, hours) for hour in copy_hours())
    first = f"arrayMin({hours})"
    first_from = f"greatest({_cut_of(first)}, toUnixTimestamp({first}) * 1000)"
    return (
        f"({around}) AND timestamp >= fromUnixTimestamp64Milli({_cut_of('toStartOfHour(timestamp)')}, 'UTC') - {COPY_MARGIN} "
        f"AND timestamp >= fromUnixTimestamp64Milli({first_from}, 'UTC') - {COPY_MARGIN}"
    )


def _cut_of(hour: str) -> str:
    """The cut of ``hour`` in epoch ms, 0 when the report uses none."""
    return f"arrayElement(cut_from, indexOf(cut_hours, {hour}))"


# After FINAL: an event of a dirty hour read raw is from the hour's cut on (every event, without one).
AFTER_CUT = f"toUnixTimestamp64Milli({exact()}) >= {_cut_of(EXACT_HOUR)}"


def cut_rows(table: str, columns: str) -> str:
    """A ``UNION ALL`` branch: ``columns`` of the rows ``table`` (a ``rollup_*_cuts``) holds for the cuts a
    report uses."""
    return (
        f" UNION ALL SELECT {columns} FROM {table} WHERE project_id = {{project:String}} "
        "AND (hour, gen) IN arrayZip(cut_hours, cut_gens)"
    )
