"""One entry point per stats request: parse the query string, check the read token, run the report.

``app.py`` calls :func:`answer` with the report's name; everything a request
can get wrong comes back as a :class:`~chalicelib.errors.RequestError` (4xx);
an engine that is away, locked by another process or not migrated yet is a
503 that says what to do, never a raw 500.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from chalicelib.errors import NotFoundError, RequestError
from chalicelib.goals import DEFAULT_WINDOW, Goal, parse_window, resolve_steps
from chalicelib.projects import DEV_PROJECT_ID, DEV_STAGES, Project, ProjectStore, dev_project
from chalicelib.stats import reports as stats
from chalicelib.stats import sql as stats_sql
from chalicelib.stats.params import StatsQuery, parse_query
from chalicelib.storage.clickhouse import engine_answer

# Report -> parameters it reads besides the common ones and the filters.
EXTRA_PARAMS = {
    "overview": frozenset(),
    "timeseries": frozenset(),
    "breakdown": frozenset({"goal"}),
    "breakdowns": frozenset({"dimensions", "goal"}),
    "errors": frozenset(),
    "events": frozenset({"name", "property"}),
    "clicks": frozenset(),
    "realtime": frozenset(),
    "goals": frozenset(),
    "funnel": frozenset({"steps", "funnel", "window"}),
}


def request_query(
    params: Mapping[str, str] | None, extra: frozenset[str], *, stage: str, now_ms: Callable[[], int]
) -> tuple[StatsQuery, datetime]:
    """The request's query (the development project by default in the dev stages) and the time it is for."""
    now = datetime.fromtimestamp(now_ms() / 1000, UTC)
    default = DEV_PROJECT_ID if stage in DEV_STAGES else None
    return parse_query(params, now=now, extra=extra, default_project=default), now


def answer(
    report: str,
    params: Mapping[str, str] | None,
    *,
    authorization: str | None,
    projects: ProjectStore,
    reader: Callable[[], Any],
    stage: str,
    now_ms: Callable[[], int],
    dimension: str | None = None,
) -> dict[str, Any]:
    """The JSON body for ``GET /v1/stats/<report>``; raises TrackflowError for 4xx/503."""
    token = stats.bearer_token(authorization)
    if report == "projects":
        return stats.list_projects(projects, token, stage=stage)
    query, now = request_query(params, EXTRA_PARAMS[report], stage=stage, now_ms=now_ms)
    stats.authorise_read(projects, query.project_id, token, stage=stage)

    # The project's goals and funnels, looked up only by the reports that use them (the store may be DynamoDB).
    def project() -> Project:
        return projects.get(query.project_id) or dev_project()  # only the development project is built in

    result: dict[str, Any] = engine_answer(
        lambda: _report(report, reader(), query, params or {}, dimension, now, project)
    )
    return result


def _goal(project: Project, goal_id: str) -> Goal:
    for goal in project.goals:
        if goal.goal_id == goal_id:
            return goal
    known = ", ".join(g.goal_id for g in project.goals) or "none yet: `trackflow goals add`"
    raise NotFoundError(
        f"unknown goal {goal_id[:40]!r}; this project's goals: {known}", field="goal", code="unknown_goal"
    )


def _dimensions(params: Mapping[str, str]) -> list[str]:
    """``dimensions=a,b,c`` (default: every one); the names are checked by the report."""
    return params["dimensions"].split(",") if "dimensions" in params else list(stats_sql.DIMENSIONS)


def _funnel(client: Any, query: Any, params: Mapping[str, str], project: Project) -> dict[str, Any]:
    """``steps=a,b,c`` (goal ids or paths) or ``funnel=<saved id>`` (default: the first saved), with ``window``
    (default: the saved funnel's, else 1d)."""
    saved = params.get("funnel")
    if saved is not None and "steps" in params:
        raise RequestError(
            "give steps (goal ids or paths, comma-separated) or funnel (a saved funnel's id), not both", field="steps"
        )
    window_s = None
    if "steps" in params:
        specs = params["steps"].split(",")
    else:  # a saved funnel: the one named, or the project's first
        found = [f for f in project.funnels if saved is None or f.funnel_id == saved][:1]
        if not found:
            known = ", ".join(f.funnel_id for f in project.funnels) or "none yet: `trackflow funnels add`"
            what = f"unknown funnel {saved[:40]!r}" if saved is not None else "no steps given and no saved funnel"
            raise NotFoundError(f"{what}; saved: {known}", field="funnel", code="unknown_funnel")
        specs, window_s = list(found[0].steps), found[0].window_s
    steps = resolve_steps(specs, project.goals)
    if "window" in params:
        window_s = parse_window(params["window"])
    return stats.funnel(client, query, steps, window_s or int(DEFAULT_WINDOW.total_seconds()))


def _report(
    report: str,
    client: Any,
    query: Any,
    params: Mapping[str, str],
    dimension: str | None,
    now: datetime,
    project: Callable[[], Project],
) -> dict[str, Any]:
    if report == "overview":
        return stats.overview(client, query)
    if report == "timeseries":
        return stats.timeseries(client, query)
    if report == "breakdown" and "goal" in params:
        return stats.goal_breakdown(client, query, dimension or "", _goal(project(), params["goal"]))
    if report == "breakdown":
        return stats.breakdown(client, query, dimension or "")
    if report == "breakdowns" and "goal" in params:
        return stats.goal_breakdowns(client, query, _dimensions(params), _goal(project(), params["goal"]))
    if report == "breakdowns":
        return stats.breakdowns(client, query, _dimensions(params))
    if report == "goals":
        return stats.goals(client, query, project())
    if report == "funnel":
        return _funnel(client, query, params, project())
    if report == "errors":
        return stats.errors(client, query)
    if report == "events":
        return stats.custom_events(client, query, name=params.get("name"), prop=params.get("property"))
    if report == "clicks":
        return stats.clicks(client, query)
    return stats.realtime(client, query, now=now)
