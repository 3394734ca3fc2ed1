"""One entry point per stats request: parse the query string, check the read token, run the report.

``app.py`` calls :func:`answer` with the report's name; everything a request
can get wrong comes back as a :class:`~chalicelib.errors.RequestError` (4xx);
an engine that is away, locked by another process or not migrated yet is a
503 that says what to do, never a raw 500.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from chalicelib import stats
from chalicelib.errors import EngineLockedError, ServiceUnavailableError, StorageError
from chalicelib.projects import DEV_PROJECT_ID, DEV_STAGES, ProjectStore
from chalicelib.stats_params import parse_query

# Report -> parameters it reads besides the common ones and the filters.
EXTRA_PARAMS = {
    "overview": frozenset(),
    "timeseries": frozenset(),
    "breakdown": frozenset(),
    "errors": frozenset(),
    "events": frozenset({"name", "property"}),
    "clicks": frozenset(),
    "realtime": frozenset(),
}


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
    now = datetime.fromtimestamp(now_ms() / 1000, UTC)
    default = DEV_PROJECT_ID if stage in DEV_STAGES else None
    query = parse_query(params, now=now, extra=EXTRA_PARAMS[report], default_project=default)
    stats.authorise_read(projects, query.project_id, token, stage=stage)
    from clickhouse_connect.driver.exceptions import ClickHouseError

    try:
        return _report(report, reader(), query, params, dimension, now)
    except (StorageError, EngineLockedError) as exc:
        raise ServiceUnavailableError(f"ClickHouse is not reachable: {exc.message}") from exc
    except ClickHouseError as exc:  # the engine's own errors: never a raw 500 for a reader
        raise ServiceUnavailableError(_engine_problem(exc)) from exc


# ClickHouse codes for a database or table that is not there: the migrations have not run.
_NOT_MIGRATED = {"81", "60"}


def _engine_problem(exc: Exception) -> str:
    text = str(exc)
    code = re.search(r"Code: (\d+)", text)
    if code and code.group(1) in _NOT_MIGRATED:
        return f"ClickHouse has no TrackFlow tables yet: run `trackflow migrate` (or start `trackflow dev`). ({text[:200]})"
    return f"ClickHouse could not answer: {text[:300]}"


def _report(
    report: str, client: Any, query: Any, params: Mapping[str, str] | None, dimension: str | None, now: datetime
) -> dict[str, Any]:
    if report == "overview":
        return stats.overview(client, query)
    if report == "timeseries":
        return stats.timeseries(client, query)
    if report == "breakdown":
        return stats.breakdown(client, query, dimension or "")
    if report == "errors":
        return stats.errors(client, query)
    if report == "events":
        extra = params or {}
        return stats.custom_events(client, query, name=extra.get("name"), prop=extra.get("property"))
    if report == "clicks":
        return stats.clicks(client, query)
    return stats.realtime(client, query, now=now)
