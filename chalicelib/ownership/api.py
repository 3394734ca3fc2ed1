"""``DELETE /v1/projects/{project}/people`` and ``GET /v1/stats/export``: a person's erasure and the project's events.

Erasure changes stored data, so it takes the project's *admin* token
(``tf_at_<project>.<secret>``, ``trackflow projects show``), never the read
token a dashboard holds. The development project is open in the dev and test
stages, as for reading. Every refusal is a 4xx JSON error; the work itself is
:func:`chalicelib.ownership.people.erase`. An export page takes the read token
and the stats API's query string, and is read by :mod:`chalicelib.ownership.export`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from chalicelib.errors import ForbiddenError, RequestError, UnauthorizedError
from chalicelib.ownership.export import API_FORMATS, API_MAX_DAYS, FORMATS, Selection, page
from chalicelib.ownership.people import erase, person_from
from chalicelib.projects import (
    ADMIN_TOKEN_PREFIX,
    DEV_PROJECT_ID,
    DEV_STAGES,
    MAX_PROJECT_ID_LENGTH,
    ProjectStore,
    project_for_read_token,
    token_project_id,
    tokens_equal,
)
from chalicelib.stats import reports as stats
from chalicelib.stats.api import request_query
from chalicelib.storage.clickhouse import engine_answer


def authorise_admin(projects: ProjectStore, project_id: str, token: str | None, *, stage: str) -> str:
    """Who is asking (for the audit row), or 401/403/404 saying what is wrong."""
    if project_id == DEV_PROJECT_ID and stage in DEV_STAGES:
        return f"{stage} stage, development project"
    if len(project_id) > MAX_PROJECT_ID_LENGTH or not project_id.isprintable():
        raise RequestError(f"project must be at most {MAX_PROJECT_ID_LENGTH} printable characters", field="project")
    project = stats.stored_project(projects, project_id)
    if token is None:
        raise UnauthorizedError(
            "send the project's admin token as 'Authorization: Bearer <token>' (trackflow projects show)",
            code="missing_token",
        )
    if project.admin_token and tokens_equal(project.admin_token, token):
        return f"admin token of {project_id}"
    if project.read_token and tokens_equal(project.read_token, token):
        raise ForbiddenError(
            "a read token cannot erase data: send the project's admin token (trackflow projects show)",
            code="admin_token_required",
        )
    if not project.admin_token:
        raise ForbiddenError(
            f"project {project_id!r} has no admin token yet: `trackflow projects rotate-admin-token {project_id}`",
            code="admin_token_required",
        )
    other = token_project_id(token, ADMIN_TOKEN_PREFIX)
    if (other and other != project_id) or project_for_read_token(projects, token) is not None:
        raise ForbiddenError(f"this token belongs to another project, not {project_id!r}", code="wrong_project")
    raise UnauthorizedError("the admin token is not valid for this project", code="bad_token")


def erase_request(
    project_id: str,
    params: Mapping[str, str] | None,
    *,
    authorization: str | None,
    projects: ProjectStore,
    client: Callable[[], Any],
    rebuild: Any,
    stage: str,
    now_ms: Callable[[], int],
    cluster: str | None = None,
) -> dict[str, Any]:
    """The receipt of one erasure, as JSON."""
    params = dict(params or {})
    unknown = sorted(set(params) - {"user_id", "anonymous_id"})
    if unknown:
        raise RequestError(
            f"unknown parameter {unknown[0][:64]!r}; give user_id or anonymous_id", field=unknown[0][:64]
        )
    person = person_from({"user_id": params.get("user_id"), "anonymous_id": params.get("anonymous_id")})
    actor = authorise_admin(projects, project_id, stats.bearer_token(authorization), stage=stage)
    now = datetime.fromtimestamp(now_ms() / 1000, UTC)
    receipt = engine_answer(
        lambda: erase(client(), project_id, person, actor=f"api: {actor}", now=now, rebuild=rebuild, cluster=cluster)
    )
    body: dict[str, Any] = receipt.to_public()
    return body


def export(
    params: Mapping[str, str] | None,
    *,
    authorization: str | None,
    projects: ProjectStore,
    reader: Callable[[], Any],
    stage: str,
    now_ms: Callable[[], int],
) -> tuple[bytes, str, str | None]:
    """The body, media type and next cursor of ``GET /v1/stats/export``: a page of stored events."""
    query, _ = request_query(params, frozenset({"format", "cursor"}), stage=stage, now_ms=now_ms)
    if query.filters:
        raise RequestError(f"export takes no filters, got {query.filters[0].name!r}", field=query.filters[0].name)
    fmt = (params or {}).get("format", "csv")
    if fmt not in API_FORMATS:
        raise RequestError(
            f"format must be one of {', '.join(API_FORMATS)}, got {fmt[:16]!r} (Parquet: trackflow export)",
            field="format",
        )
    if query.end - query.start > timedelta(days=API_MAX_DAYS):
        raise RequestError(f"an export request covers at most {API_MAX_DAYS} days; ask for each month", field="from")
    stats.authorise_read(projects, query.project_id, stats.bearer_token(authorization), stage=stage)
    selection = Selection(query.project_id, query.start, query.end)
    body, cursor = engine_answer(lambda: page(reader(), selection, fmt, cursor=(params or {}).get("cursor")))
    return body, FORMATS[fmt][2], cursor
