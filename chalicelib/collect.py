"""The collect use-case: a request body in, events on Kafka, an answer out.

Parsing and validation live in :mod:`chalicelib.events`, enrichment in
:mod:`chalicelib.enrich`; this module strings them together and sends the
accepted events with one acknowledged produce. Nothing is accepted unless Kafka
acknowledged it: a produce failure raises ``ProduceError`` (503 + Retry-After)
and the client resends the whole batch (the server deduplicates by event_id).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from chalicelib.enrich import SCHEMA_VERSION, enrich
from chalicelib.errors import ForbiddenError, RequestError, UnauthorizedError, UnsupportedMediaTypeError
from chalicelib.events import parse_body
from chalicelib.producer import KafkaSender, visitor_messages
from chalicelib.projects import Project, ProjectStore, resolve_key

ACCEPTED_CONTENT_TYPES = ("application/json", "text/plain")


@dataclass(frozen=True)
class CollectResult:
    status: int
    body: dict[str, object]


def check_content_type(content_type: str) -> None:
    """Accept JSON, text (what sendBeacon and a preflight-free fetch send) or no type."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type and media_type not in ACCEPTED_CONTENT_TYPES:
        raise UnsupportedMediaTypeError(
            f"Content-Type {media_type!r} is not accepted; send application/json or text/plain",
            field="Content-Type",
        )


def authorise(projects: ProjectStore, api_key: str, *, stage: str, origin: str | None) -> Project:
    """The project a request is for; 401 for an unknown key, 403 when disabled or from a foreign origin."""
    project = resolve_key(projects, api_key, stage=stage)
    if project is None:
        raise UnauthorizedError(f"no project has the API key {api_key[:64]!r}", field="api_key")
    if not project.enabled:
        raise ForbiddenError("this project is disabled", field="api_key", code="project_disabled")
    if not project.allows_origin(origin):
        raise ForbiddenError(
            f"origin {origin!r} is not among the project's allowed origins", field="Origin", code="origin_not_allowed"
        )
    return project


def collect(
    body: bytes | str | None,
    *,
    content_type: str,
    origin: str | None,
    projects: ProjectStore,
    stage: str,
    sender: KafkaSender,
    topic: str,
    user_agent: str,
    now_ms: Callable[[], int],
) -> CollectResult:
    """Validate, enrich and produce one request's events; 202 with per-event rejections."""
    check_content_type(content_type)
    batch = parse_body(body.encode() if isinstance(body, str) else body or b"")
    if not batch.events:
        raise RequestError(
            f"none of the {len(batch.rejected)} events is valid; first problem at index "
            f"{batch.rejected[0]['index']}: {batch.rejected[0]['reason']}",
            field="events",
            code="no_valid_events",
        )
    project_id = authorise(projects, batch.api_key, stage=stage, origin=origin).project_id
    received_at = now_ms()
    enriched = [
        enrich(
            event, project_id=project_id, sent_at_ms=batch.sent_at_ms, received_at_ms=received_at, user_agent=user_agent
        )
        for event in batch.events
    ]
    sender.send(topic, visitor_messages(enriched, project_id=project_id, schema_version=SCHEMA_VERSION))
    return CollectResult(202, {"accepted": len(enriched), "rejected": batch.rejected})
