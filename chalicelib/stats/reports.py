"""The stats API's use-cases: who may read, and each report as JSON-ready dicts.

Every function takes a clickhouse-connect client (``reader``) and a
:class:`~chalicelib.stats.params.StatsQuery`; SQL comes from
``chalicelib.stats.sql``. Unfiltered queries read the rollups for the hours
and days compaction has made clean and raw events for the rest, in one
statement checking the split it was given (``chalicelib.rollups.split``);
filtered queries read raw events only.
``rollups=False`` forces raw events (the tests compare both).

Numbers: ``visitors`` uses ClickHouse's ``uniq`` (exact for small sets, within
about 1% beyond 65,536 visitors; per page, session breakdown value and clicked
element in the rollups ``uniqCombined(14)``, exact up to a few thousand); every
other count is exact.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from chalicelib.errors import ForbiddenError, NotFoundError, RequestError, ServiceUnavailableError, UnauthorizedError
from chalicelib.goals import Goal, Step
from chalicelib.projects import (
    DEV_PROJECT_ID,
    DEV_STAGES,
    Project,
    ProjectStore,
    listed_projects,
    project_for_read_token,
    tokens_equal,
)
from chalicelib.rollups import split as rollup_split
from chalicelib.rollups.sql import final_settings
from chalicelib.stats import sql as stats_sql
from chalicelib.stats.params import StatsQuery
from chalicelib.stats.sql import Sql

logger = logging.getLogger(__name__)

REALTIME_WINDOW = timedelta(minutes=5)


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def stored_project(projects: ProjectStore, project_id: str) -> Project:
    """The project with this id, or 404 saying where the ids are."""
    project = projects.get(project_id)
    if project is None:
        raise NotFoundError(
            f"no project {project_id!r}; `trackflow projects list` shows them", field="project", code="unknown_project"
        )
    return project


def authorise_read(projects: ProjectStore, project_id: str, token: str | None, *, stage: str) -> None:
    """Allow reading ``project_id`` with this read token, or raise 401/403/404.

    The development project is open in the dev and test stages. A token that
    belongs to another project gets 403, any other wrong token 401.
    """
    if project_id == DEV_PROJECT_ID and stage in DEV_STAGES:
        return
    project = stored_project(projects, project_id)
    if token is None:
        raise UnauthorizedError(
            "send the project's read token as 'Authorization: Bearer <token>' (trackflow projects show)",
            code="missing_token",
        )
    if project.read_token and tokens_equal(project.read_token, token):
        return
    if project_for_read_token(projects, token) is not None:
        raise ForbiddenError(f"this read token belongs to another project, not {project_id!r}", code="wrong_project")
    raise UnauthorizedError("the read token is not valid for any project", code="bad_token")


def _run(reader: Any, statement: str, sql: Sql) -> list[dict[str, Any]]:
    """Rows as dicts; clickhouse-connect already gives integer columns as Python ints."""
    settings = final_settings(reader)  # rollup tables, like events, keep every copy of a key in one partition
    try:
        if rollup_split.uses_split(statement):
            result = rollup_split.query(reader, statement, sql.params, settings=settings)
        else:
            result = reader.query(statement, parameters=sql.params, settings=settings)
    except Exception as exc:
        logger.exception("stats query failed")
        raise ServiceUnavailableError(f"ClickHouse could not answer the query ({type(exc).__name__})") from exc
    return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]


def _period(query: StatsQuery) -> dict[str, Any]:
    return {
        "from": query.start.isoformat(),
        "to": query.end.isoformat(),
        "tz": query.tz,
        "bots": "include" if query.include_bots else "exclude",
    }


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    sessions = int(row["sessions"])
    with_pageviews = int(row["sessions_with_pageviews"])
    return {
        "visitors": int(row["visitors"]),
        "sessions": sessions,
        "pageviews": int(row["pageviews"]),
        "bounce_rate": round(100 * int(row["bounces"]) / with_pageviews, 1) if with_pageviews else 0.0,
        "avg_session_s": round(int(row["total_duration_ms"]) / sessions / 1000, 1) if sessions else 0.0,
    }


def overview(reader: Any, query: StatsQuery, *, rollups: bool = True) -> dict[str, Any]:
    """Visitors, sessions, page views, bounce rate and session length, with the period before."""
    both = replace(query, start=query.previous().start)  # one statement reads both periods
    sql = Sql().bind(both)
    statement = stats_sql.overview(sql, both, query.start, rollups=rollups and stats_sql.uses_rollups(both))
    row = _run(reader, statement, sql)[0]
    current = _summary({name: row[name] for name in stats_sql.OVERVIEW_FIGURES})
    previous = _summary({name: row[f"previous_{name}"] for name in stats_sql.OVERVIEW_FIGURES})
    return {
        "period": _period(query),
        "previous_period": _period(query.previous()),
        "metrics": {name: {"value": current[name], "previous": previous[name]} for name in current},
    }


def _buckets(query: StatsQuery) -> list[datetime]:
    zone = ZoneInfo(query.tz)
    if query.interval == "hour":
        first = query.start.replace(minute=0, second=0, microsecond=0)
        count = int((query.end - first).total_seconds() // 3600) + (query.end.minute > 0)
        return [first + timedelta(hours=n) for n in range(count)]
    day = query.start.astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
    found = []
    while day.astimezone(UTC) < query.end:
        found.append(day.astimezone(UTC))
        day = (day + timedelta(days=1, hours=3)).replace(hour=0)  # safe across DST changes
    return found


def timeseries(reader: Any, query: StatsQuery, *, rollups: bool = True) -> dict[str, Any]:
    """Page views, events and visitors per hour or per day (in ``tz``), empty buckets included."""
    sql = Sql().bind(query)
    statement = stats_sql.timeseries(sql, query, rollups=rollups and stats_sql.uses_rollups(query))
    by_bucket = {int(row["bucket"]): row for row in _run(reader, statement, sql)}
    zone = ZoneInfo(query.tz)
    points = []
    for start in _buckets(query):
        row = by_bucket.get(int(start.timestamp()), {})
        points.append(
            {
                "time": start.astimezone(zone).isoformat(),
                "pageviews": int(row.get("pageviews", 0)),
                "events": int(row.get("events", 0)),
                "visitors": int(row.get("visitors", 0)),
            }
        )
    return {"period": _period(query), "interval": query.interval, "points": points}


def _check_dimension(dimension: str, *, field: str = "dimension") -> None:
    if dimension not in stats_sql.DIMENSIONS:
        raise RequestError(
            f"unknown breakdown {dimension[:64]!r}; one of {', '.join(stats_sql.DIMENSIONS)}", field=field
        )


def _asked(dimensions: list[str]) -> list[str]:
    """``dimensions`` checked, each once, in the order asked."""
    for dimension in dimensions:
        _check_dimension(dimension, field="dimensions")
    return list(dict.fromkeys(dimensions))


class _Statements(Protocol):
    def sessions(self, sql: Sql, columns: list[str]) -> str: ...

    def pages(self, sql: Sql) -> str: ...


def _breakdown_rows(
    reader: Any, query: StatsQuery, dimensions: list[str], statements: _Statements
) -> dict[str, list[dict[str, Any]]]:
    """Each of ``dimensions``' rows: the session ones from one statement, ``statements.sessions(sql,
    columns)`` (their sessions read once for all), pages from its own, ``statements.pages(sql)``."""
    found: dict[str, list[dict[str, Any]]] = {dimension: [] for dimension in dimensions}
    by_column = {stats_sql.DIMENSIONS[d][0]: d for d in dimensions if stats_sql.DIMENSIONS[d][1] == "sessions"}
    if by_column:
        sql = Sql().bind(query)
        for row in _run(reader, statements.sessions(sql, list(by_column)), sql):
            found[by_column[row.pop("dimension")]].append(row)
    if "pages" in found:
        sql = Sql().bind(query)
        found["pages"] = _run(reader, statements.pages(sql), sql)
    return found


@dataclass(frozen=True)
class _Plain:
    """The statements of plain breakdowns: visitors, sessions and page views per value."""

    query: StatsQuery
    rollups: bool

    def sessions(self, sql: Sql, columns: list[str]) -> str:
        return stats_sql.session_breakdowns(sql, self.query, columns, rollups=self.rollups)

    def pages(self, sql: Sql) -> str:
        return stats_sql.page_breakdown(sql, self.query, rollups=self.rollups)


@dataclass(frozen=True)
class _Converting:
    """The statements of conversion tables: visitors and those who reached ``goal``, per value."""

    query: StatsQuery
    goal: Goal

    def sessions(self, sql: Sql, columns: list[str]) -> str:
        return stats_sql.goal_session_breakdowns(sql, self.query, columns, self.goal)

    def pages(self, sql: Sql) -> str:
        return stats_sql.goal_page_breakdown(sql, self.query, self.goal)


def _conversion_rates(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for row in rows:
        row["conversion_rate"] = _rate(int(row["converted_visitors"]), int(row["visitors"]))
    return rows


def breakdown(reader: Any, query: StatsQuery, dimension: str, *, rollups: bool = True) -> dict[str, Any]:
    """Top values of one dimension (pages, referrers, countries, ...) by visitors or page views."""
    _check_dimension(dimension)
    rows = _breakdown_rows(reader, query, [dimension], _Plain(query, rollups and stats_sql.uses_rollups(query)))
    return {"period": _period(query), "dimension": dimension, "rows": rows[dimension]}


def breakdowns(reader: Any, query: StatsQuery, dimensions: list[str], *, rollups: bool = True) -> dict[str, Any]:
    """Several breakdowns in one answer, as the dashboard shows them: each as :func:`breakdown` gives it,
    the session ones from one statement. A dimension named twice is answered once."""
    dimensions = _asked(dimensions)
    rows = _breakdown_rows(reader, query, dimensions, _Plain(query, rollups and stats_sql.uses_rollups(query)))
    return {"period": _period(query), "breakdowns": [{"dimension": d, "rows": rows[d]} for d in dimensions]}


def _rate(part: int, whole: int) -> float:
    return round(100 * part / whole, 1) if whole else 0.0


def goals(reader: Any, query: StatsQuery, project: Project) -> dict[str, Any]:
    """Per goal: visitors who converted, conversions (events) and the rate against all visitors, with
    the period before; and the project's saved funnels (for the dashboard's list)."""
    both = replace(query, start=query.previous().start)
    rows: dict[bool, dict[str, Any]] = {}
    if project.goals:
        sql = Sql().bind(both)
        rows = {
            bool(r["current"]): r for r in _run(reader, stats_sql.goals(sql, both, project.goals, query.start), sql)
        }

    def figures(row: dict[str, Any], number: int) -> dict[str, Any]:
        visitors, converted = int(row.get("visitors", 0)), int(row.get(f"g{number}_visitors", 0))
        return {
            "visitors": converted,
            "conversions": int(row.get(f"g{number}_events", 0)),
            "conversion_rate": _rate(converted, visitors),
        }

    current, previous = rows.get(True, {}), rows.get(False, {})
    return {
        "period": _period(query),
        "previous_period": _period(query.previous()),
        "visitors": {"value": int(current.get("visitors", 0)), "previous": int(previous.get("visitors", 0))},
        "goals": [
            goal.to_public() | figures(current, n) | {"previous": figures(previous, n)}
            for n, goal in enumerate(project.goals)
        ],
        "funnels": [f.to_public() for f in project.funnels],
    }


def goal_breakdown(reader: Any, query: StatsQuery, dimension: str, goal: Goal) -> dict[str, Any]:
    """A breakdown as a conversion table: visitors, the visitors who converted, and the rate, per value."""
    _check_dimension(dimension)
    rows = _breakdown_rows(reader, query, [dimension], _Converting(query, goal))[dimension]
    return {"period": _period(query), "dimension": dimension, "goal": goal.to_public(), "rows": _conversion_rates(rows)}


def goal_breakdowns(reader: Any, query: StatsQuery, dimensions: list[str], goal: Goal) -> dict[str, Any]:
    """Several conversion tables in one answer, as :func:`breakdowns` gives breakdowns."""
    dimensions = _asked(dimensions)
    rows = _breakdown_rows(reader, query, dimensions, _Converting(query, goal))
    return {
        "period": _period(query),
        "goal": goal.to_public(),
        "breakdowns": [{"dimension": d, "rows": _conversion_rates(rows[d])} for d in dimensions],
    }


def funnel(reader: Any, query: StatsQuery, steps: list[Step], window_s: int) -> dict[str, Any]:
    """Visitors reaching each step in order within the window, conversion from the step before and from
    the first, drop-off, and the median time from the step before."""
    sql = Sql().bind(query)
    row = _run(reader, stats_sql.funnel(sql, query, [s.goal for s in steps], window_s), sql)[0]
    first = int(row["reached_1"])
    out = []
    for number, step in enumerate(steps, 1):
        reached = int(row[f"reached_{number}"])
        before = int(row[f"reached_{number - 1}"]) if number > 1 else reached
        median = row.get(f"median_ms_{number}") or 0
        out.append(
            {
                "step": number,
                "label": step.label,
                "visitors": reached,
                "conversion_from_previous": _rate(reached, before),
                "conversion_from_first": _rate(reached, first),
                "dropped": before - reached,
                "median_s_from_previous": round(float(median) / 1000, 1) if number > 1 and reached else None,
            }
        )
    return {"period": _period(query), "window_s": window_s, "steps": out}


def errors(reader: Any, query: StatsQuery, *, rollups: bool = True) -> dict[str, Any]:
    """Errors grouped by message and source: count, sessions hit, first/last seen, a sample stack."""
    sql = Sql().bind(query)
    statement = stats_sql.errors(sql, query, rollups=rollups and stats_sql.uses_rollups(query))
    return {"period": _period(query), "rows": _run(reader, statement, sql)}


def custom_events(
    reader: Any, query: StatsQuery, *, name: str | None, prop: str | None, rollups: bool = True
) -> dict[str, Any]:
    """Custom event names with counts, or (``name`` and ``property``) one property's values."""
    sql = Sql().bind(query)
    if prop is not None and name is None:
        raise RequestError("property needs name (the custom event to break down)", field="name")
    if name is not None and prop is not None:
        statement = stats_sql.event_properties(sql, query, name, prop)
    else:
        statement = stats_sql.custom_events(sql, query, rollups=rollups and stats_sql.uses_rollups(query))
    return {"period": _period(query), "name": name, "property": prop, "rows": _run(reader, statement, sql)}


def clicks(reader: Any, query: StatsQuery, *, rollups: bool = True) -> dict[str, Any]:
    """Clicks grouped by element (tag, id, text, link)."""
    sql = Sql().bind(query)
    statement = stats_sql.clicks(sql, query, rollups=rollups and stats_sql.uses_rollups(query))
    return {"period": _period(query), "rows": _run(reader, statement, sql)}


def realtime(reader: Any, query: StatsQuery, *, now: datetime) -> dict[str, Any]:
    """Visitors and events in the last five minutes, and the latest events."""
    window = replace(query, start=now - REALTIME_WINDOW, end=now + timedelta(seconds=1))
    sql = Sql().bind(window)
    counts = _run(reader, stats_sql.realtime_counts(sql, window), sql)[0]
    sql = Sql().bind(window)
    latest = _run(reader, stats_sql.latest_events(sql, window), sql)
    return {
        "window_s": int(REALTIME_WINDOW.total_seconds()),
        "visitors": int(counts["visitors"]),
        "pageviews": int(counts["pageviews"]),
        "events": int(counts["events"]),
        "latest": latest,
    }


def list_projects(projects: ProjectStore, token: str | None, *, stage: str) -> dict[str, Any]:
    """The projects a dashboard may offer: all of them locally, the token's own otherwise."""
    if stage in DEV_STAGES:
        found = [p for p in listed_projects(projects, stage=stage) if p.enabled]
        return {
            "projects": [
                {"project_id": p.project_id, "name": p.name, "needs_token": p.project_id != DEV_PROJECT_ID}
                for p in found
            ]
        }
    owner = project_for_read_token(projects, token) if token else None
    if owner is None:
        raise UnauthorizedError("send a read token as 'Authorization: Bearer <token>'", code="missing_token")
    return {"projects": [{"project_id": owner.project_id, "name": owner.name, "needs_token": True}]}
