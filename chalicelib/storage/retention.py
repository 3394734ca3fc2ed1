"""Retention: events, rollups, change marks and dead letters older than a project's retention are deleted.

Each project keeps ``retention_days`` (its own, or ``TRACKFLOW_RETENTION_DAYS``,
400 by default) whole UTC days: today and the days before it. Everything of
a project's older days goes in one run, from every table that holds it, by
the same day rule (:func:`cutoffs`), so the rollups never count what the
events no longer hold. Projects that only ClickHouse still knows (deleted
from the store) keep the default.

A run deletes with ``ALTER TABLE ... DELETE`` (a mutation ClickHouse applies
in the background; every version has it), and only where a count finds
something expired, so a day without expiries costs a few small queries.
:class:`Schedule` runs it at most once per :data:`RUN_EVERY_S`; the
compaction schedule (the deployed ``compact`` function, ``trackflow dev``)
calls it, so nothing else needs scheduling.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from chalicelib.cluster_ddl import alter
from chalicelib.rollups.sql import BOOK_TIMES, ROLLUP_TIMES, day_of
from chalicelib.storage.clickhouse import letter_field

RUN_EVERY_S = 6 * 3600
# Table -> the expression giving a row's UTC day and its project.
TABLE_DAYS = {
    "events": ("toDate(timestamp)", "project_id"),
    # Rollups and compaction's books by their time column. Cuts expire a day after they were written
    # (migration 014); an old day's are deleted with it all the same.
    **{table: (day_of(column), "project_id") for table, column in {**ROLLUP_TIMES, **BOOK_TIMES}.items()},
    # A record's project is in its message (chalicelib.kafka.producer); an unreadable one has none: the default.
    "dead_letters": ("toDate(failed_at)", letter_field("project_id", "value")),
}


@dataclass(frozen=True)
class Expired:
    """What a run found expired, per table (rows), and the cutoffs it used."""

    rows: dict[str, int]
    default_first_day: date
    first_days: dict[str, date]


def first_kept_day(today: date, retention_days: int) -> date:
    """The oldest day a retention of ``retention_days`` keeps (today counts as one)."""
    return today - timedelta(days=retention_days - 1)


def cutoffs(projects: Iterable[Any], *, default_days: int, today: date) -> tuple[dict[str, date], date]:
    """Each stored project's first kept day, and the default's for every other project id."""
    kept = {p.project_id: first_kept_day(today, getattr(p, "retention_days", 0) or default_days) for p in projects}
    return kept, first_kept_day(today, default_days)


def _expired_condition(day: str, project: str) -> str:
    """Rows older than their project's first kept day (``{projects}``/``{firsts}`` as parameters)."""
    return (
        f"{day} < if(indexOf({{projects:Array(String)}}, {project}) > 0, "
        f"{{firsts:Array(Date)}}[indexOf({{projects:Array(String)}}, {project})], {{default_first:Date}})"
    )


def expire(
    client: Any,
    projects: Iterable[Any],
    *,
    default_days: int,
    now: datetime,
    wait: bool = False,
    cluster: str | None = None,
) -> Expired:
    """Delete every expired row; ``wait`` returns only once ClickHouse has applied the deletes;
    ``cluster`` deletes from the local tables of every node (CLICKHOUSE_CLUSTER)."""
    firsts, default_first = cutoffs(projects, default_days=default_days, today=now.astimezone(UTC).date())
    params = {"projects": list(firsts), "firsts": list(firsts.values()), "default_first": default_first}
    found: dict[str, int] = {}
    settings = {"mutations_sync": 2 if wait else 0}
    newest_first = max([default_first, *firsts.values()])  # no row from this day on can be expired
    for table, (day, project) in TABLE_DAYS.items():
        condition = _expired_condition(day, project)
        rows = client.query(
            f"SELECT count() FROM {table} WHERE {day} < {{newest_first:Date}} AND {condition}",
            parameters=params | {"newest_first": newest_first},
        ).result_rows[0][0]
        if rows:
            client.command(f"{alter(table, cluster)} DELETE WHERE {condition}", parameters=params, settings=settings)
            found[table] = int(rows)
    return Expired(found, default_first, firsts)


class Schedule:
    """Runs :func:`expire` at most once per ``every_s`` in this process (the first call runs it)."""

    def __init__(self, *, every_s: float = RUN_EVERY_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._every = every_s
        self._clock = clock
        self._last: float | None = None

    def run_if_due(
        self, client: Any, projects: Any, *, default_days: int, now: datetime, cluster: str | None = None
    ) -> Expired | None:
        if self._last is not None and self._clock() - self._last < self._every:
            return None
        self._last = self._clock()
        return expire(client, projects.all(), default_days=default_days, now=now, cluster=cluster)
