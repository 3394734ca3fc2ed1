"""Rollups recomputed from deduplicated events: the exactly-once read side.

The rollup tables (migration ``007``) are never filled at insert time. Ingest
marks the (project, UTC day) pairs it is about to write in ``rollup_changes``;
:func:`compact` later recomputes each changed day from ``events FINAL`` into a
new *generation* of rollup rows and records it in ``rollup_generations`` with
the newest change it covers. A day is *clean* when its newest generation
covers every change (the ``rollup_clean`` view); reports read clean days from
the rollups and every other day from ``events FINAL`` (:func:`split_days`).

Why it holds whatever the redelivery: ``events FINAL`` counts an event id
once however often and in whatever batches it was inserted, and a rollup row
is only ever read for a day whose every insert it has seen. Nothing depends
on an insert being atomic across tables, and two compactions running at once
only write two generations, of which the newest is read.

``settle_s``: a day is compacted only once its newest change is that old, so an
insert still running when the compaction reads (it marked the day before it
started) cannot be missed; keep it above the ClickHouse insert timeout.
Under steady traffic today keeps changing and is read from ``events FINAL``.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from chalicelib.stats_sql import RAW_SESSION_COLUMNS

logger = logging.getLogger(__name__)

DEFAULT_SETTLE_S = 60.0
DEFAULT_INTERVAL_S = 15.0
# Days per round of statements: bounds the memory one compaction needs.
MAX_DAYS_PER_ROUND = 31
MAX_ROUNDS = 120
# A superseded generation stays readable this long (a report may have just looked it up).
SUPERSEDED_GRACE_S = 60.0
ROLLUP_TABLES = ("rollup_session_days", "rollup_traffic_hours", "rollup_page_hours", "rollup_page_days")

_DAYS = "{days:Array(Tuple(String, Date))}"
_COMPACT = (
    "INSERT INTO rollup_session_days (project_id, day, gen, session_id, visitor_id, is_bot, started_at, ended_at, "
    "pageviews, events, entry_page, exit_page, referrer_domain, utm_source, utm_medium, utm_campaign, browser, os, "
    "device_type, country) "
    f"SELECT project_id, toDate(timestamp) AS day, {{gen:UInt64}}, {RAW_SESSION_COLUMNS} "
    f"FROM events FINAL WHERE (project_id, toDate(timestamp)) IN {_DAYS} "
    "GROUP BY project_id, day, session_key",
    "INSERT INTO rollup_traffic_hours (project_id, hour, gen, is_bot, pageviews, events, visitors) "
    "SELECT project_id, toStartOfHour(timestamp) AS hour, {gen:UInt64}, is_bot, countIf(type = 'pageView'), "
    f"count(), uniqState(visitor_id) FROM events FINAL WHERE (project_id, toDate(timestamp)) IN {_DAYS} "
    "GROUP BY project_id, hour, is_bot",
    "INSERT INTO rollup_page_hours (project_id, hour, gen, is_bot, url_path, pageviews, visitors) "
    "SELECT project_id, toStartOfHour(timestamp) AS hour, {gen:UInt64}, is_bot, url_path, count(), "
    "uniqCombinedState(14)(visitor_id) FROM events FINAL "
    f"WHERE (project_id, toDate(timestamp)) IN {_DAYS} AND type = 'pageView' "
    "GROUP BY project_id, hour, is_bot, url_path",
    "INSERT INTO rollup_page_days (project_id, day, gen, is_bot, url_path, pageviews, visitors) "
    "SELECT project_id, toDate(hour) AS day, gen, is_bot, url_path, sum(pageviews), "
    "uniqCombinedMergeState(14)(visitors) FROM rollup_page_hours "
    f"WHERE gen = {{gen:UInt64}} AND (project_id, toDate(hour)) IN {_DAYS} "
    "GROUP BY project_id, day, gen, is_bot, url_path",
)
# (project, day) pairs changed since their newest generation covered them: those waiting for compaction.
_WAITING_DAYS = (
    "FROM (SELECT project_id, day, max(changed_at) AS last_change FROM rollup_changes GROUP BY project_id, day) AS c "
    "LEFT JOIN (SELECT project_id, day, argMax(covered_to, gen) AS newest_covered_to FROM rollup_generations "
    "GROUP BY project_id, day) AS g ON c.project_id = g.project_id AND c.day = g.day "
    "WHERE c.last_change > g.newest_covered_to"
)
# Rollup rows are written once per generation: never drop one as a repeated block.
_INSERT_SETTINGS = {"insert_deduplicate": 0}


@dataclass(frozen=True)
class DaySplit:
    """Which days of a period the rollups answer (with the generation to read) and which raw events do."""

    clean: list[tuple[date, int]]
    dirty: list[date]


@dataclass(frozen=True)
class CompactResult:
    days: int
    generation: int | None
    superseded_deleted: int


def split_days(reader: Any, project_id: str, first: date, last: date) -> DaySplit:
    """Clean days (with their generation) and the other days, for ``first``..``last`` inclusive."""
    # rollup_clean's definition, with the project and days pushed into both sides.
    where = "project_id = {project:String} AND day >= {first:Date} AND day <= {last:Date}"
    result = reader.query(
        "SELECT g.day, g.newest_gen FROM "
        "(SELECT day, max(gen) AS newest_gen, argMax(covered_to, gen) AS newest_covered_to "
        f"FROM rollup_generations WHERE {where} GROUP BY day) AS g "
        "LEFT JOIN (SELECT day, max(changed_at) AS last_change "
        f"FROM rollup_changes WHERE {where} GROUP BY day) AS c ON g.day = c.day "
        "WHERE g.newest_covered_to >= c.last_change",
        parameters={"project": project_id, "first": first, "last": last},
    )
    clean = {row[0]: int(row[1]) for row in result.result_rows}
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    return DaySplit(sorted(clean.items()), [day for day in days if day not in clean])


def mark_changed(client: Any, pairs: Iterable[tuple[str, date]]) -> None:
    """Mark (project, day) pairs as changed; call *before* writing their events."""
    rows = [[project, day] for project, day in pairs]
    if rows:
        client.insert("rollup_changes", rows, column_names=("project_id", "day"))


def _changed_days(client: Any, settle_s: float, limit: int) -> tuple[list[tuple[str, date]], Any]:
    """Days changed since their newest generation and quiet for ``settle_s``, with the newest change seen."""
    result = client.query(
        f"SELECT c.project_id, c.day, c.last_change {_WAITING_DAYS} "
        "AND c.last_change <= now64(3) - toIntervalMillisecond({settle:UInt64}) "
        "ORDER BY c.day DESC, c.project_id LIMIT {limit:UInt32}",
        parameters={"settle": int(settle_s * 1000), "limit": limit},
    )
    rows = result.result_rows
    return [(r[0], r[1]) for r in rows], {(r[0], r[1]): r[2] for r in rows}


def _new_generation() -> int:
    """Later compactions get larger numbers (milliseconds, then 16 random bits against ties)."""
    return (time.time_ns() // 1_000_000) << 16 | random.getrandbits(16)


def compact(
    client: Any, *, settle_s: float = DEFAULT_SETTLE_S, max_days: int = MAX_DAYS_PER_ROUND, cluster: str | None = None
) -> CompactResult:
    """Recompute up to ``max_days`` changed days into a new generation; delete long-superseded ones.

    ``client`` must have the TrackFlow database as its default and may write.
    Safe to run anywhere at any time, also twice at once. On a cluster
    (``cluster``: the migrations' ``--cluster``), deletes go to every shard's
    local tables: a Distributed table takes no DELETE.
    """
    days, covered = _changed_days(client, settle_s, max_days)
    generation = None
    if days:
        generation = _new_generation()
        params = {"gen": generation, "days": days}
        for statement in _COMPACT:
            client.command(statement, parameters=params, settings=_INSERT_SETTINGS)
        client.insert(
            "rollup_generations",
            [[project, day, generation, covered[(project, day)]] for project, day in days],
            column_names=("project_id", "day", "gen", "covered_to"),
        )
    deleted = _delete_superseded(client, cluster)
    if days or deleted:  # one line per round that did something
        logger.info(
            "compacted %d day(s)%s; removed %d superseded generation(s)",
            len(days),
            f" into generation {generation}" if generation is not None else "",
            deleted,
        )
    return CompactResult(len(days), generation, deleted)


def _delete_superseded(client: Any, cluster: str | None = None) -> int:
    """Drop rollup rows of generations replaced more than the grace period ago."""
    result = client.query(
        "SELECT g.project_id, g.day, g.gen FROM rollup_generations AS g INNER JOIN "
        "(SELECT project_id, day, max(gen) AS newest, argMax(recorded_at, gen) AS newest_at FROM rollup_generations "
        "GROUP BY project_id, day) AS n ON g.project_id = n.project_id AND g.day = n.day "
        "WHERE g.gen < n.newest AND n.newest_at < now64(3) - toIntervalMillisecond({grace:UInt64})",
        parameters={"grace": int(SUPERSEDED_GRACE_S * 1000)},
    )
    old = [(r[0], r[1], int(r[2])) for r in result.result_rows]
    if not old:
        return 0
    params = {"old": old}
    for table in (*ROLLUP_TABLES, "rollup_generations"):
        day = "toDate(hour)" if "hours" in table else "day"
        target = table if cluster is None else f"{table}_local ON CLUSTER {cluster}"
        client.command(
            f"DELETE FROM {target} WHERE (project_id, {day}, gen) IN {{old:Array(Tuple(String, Date, UInt64))}}",
            parameters=params,
        )
    return len(old)


def compact_all(
    client: Any, *, settle_s: float = DEFAULT_SETTLE_S, deadline: float | None = None, cluster: str | None = None
) -> int:
    """Compact round after round until no changed day is left or ``deadline`` (monotonic) passed."""
    total = 0
    for _ in range(MAX_ROUNDS):  # days keep changing under traffic: never loop for ever
        if deadline is not None and time.monotonic() >= deadline:
            break
        done = compact(client, settle_s=settle_s, cluster=cluster).days
        total += done
        if done == 0:
            break
    return total


def pending_age_s(client: Any, *, settle_s: float = DEFAULT_SETTLE_S) -> float:
    """How long past its settle window the longest-waiting changed day has waited for compaction (0: none waits).

    The compaction-age alarm reads it: a day that stays behind means compaction
    fails or cannot keep up. Today under steady traffic keeps changing, so it
    never ages here.
    """
    row = client.query(f"SELECT max(dateDiff('millisecond', c.last_change, now64(3))) {_WAITING_DAYS}").result_rows[0]
    waited_ms = float(row[0] or 0)
    return max(0.0, waited_ms / 1000 - settle_s)


def status(client: Any) -> dict[str, int]:
    """How many (project, day) pairs have events, are clean, and wait for compaction."""
    row = client.query(
        "SELECT (SELECT count() FROM (SELECT DISTINCT project_id, day FROM rollup_changes)), "
        "(SELECT count() FROM rollup_clean), "
        "(SELECT count() FROM (SELECT DISTINCT project_id, day, gen FROM rollup_generations))"
    ).result_rows[0]
    changed, clean, generations = (int(v) for v in row)
    return {"days": changed, "clean": clean, "waiting": changed - clean, "generations": generations}
