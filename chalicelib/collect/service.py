"""The collect use-case: a request body in, events on Kafka, an answer out.

Parsing and validation live in :mod:`chalicelib.collect.events`, enrichment in
:mod:`chalicelib.collect.enrich`; this module strings them together and sends the
accepted events with one acknowledged produce. Nothing is accepted unless Kafka
acknowledged it: a produce failure raises ``ProduceError`` (503 + Retry-After)
and the client resends the whole batch (the server deduplicates by event_id).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import cast

from chalicelib.collect.client_info import client_ip, country, parse_agent, visitor_hash
from chalicelib.collect.enrich import MAX_EVENT_AGE_DAYS, MAX_EVENT_AGE_MS, SCHEMA_VERSION, enrich
from chalicelib.collect.events import MAX_EVENTS_PER_BATCH, parse_body
from chalicelib.collect.privacy import keep_set
from chalicelib.collect.ratelimit import RateLimiter
from chalicelib.errors import (
    ForbiddenError,
    PayloadTooLargeError,
    RequestError,
    UnauthorizedError,
    UnsupportedMediaTypeError,
)
from chalicelib.kafka.producer import KafkaSender, visitor_messages
from chalicelib.projects import Project, ProjectStore, resolve_key

ACCEPTED_CONTENT_TYPES = ("application/json", "text/plain")
# Below Kafka's default message.max.bytes (1 MB): a bigger message would be
# refused by the broker, and the client would retry it for ever.
MAX_MESSAGE_BYTES = 900_000
STALE_REASON = f"ts is more than {MAX_EVENT_AGE_DAYS} days before the server's time (after clock-skew correction)"


@dataclass(frozen=True)
class RequestMeta:
    """What collect reads from the HTTP request besides its body.

    ``headers`` is looked up with lower-case names: Chalice's own header mapping
    (case-insensitive) or a plain dict with lower-case keys.
    """

    headers: Mapping[str, str] = field(default_factory=dict)
    source_ip: str | None = None

    def header(self, name: str) -> str:
        return self.headers.get(name, "")


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


def _client_fields(project: Project, request: RequestMeta, salt: bytes) -> dict[str, object]:
    user_agent = request.header("user-agent")
    agent = parse_agent(user_agent)
    ip = client_ip(request.headers, request.source_ip)
    return {
        "user_agent": user_agent,
        "browser": agent.browser,
        "browser_version": agent.browser_version,
        "os": agent.os,
        "os_version": agent.os_version,
        "device_type": agent.device_type,
        "is_bot": int(agent.is_bot),
        "country": country(request.headers),
        "visitor_hash": visitor_hash(salt, project_id=project.project_id, ip=ip, user_agent=user_agent),
    }


def collect(
    body: bytes | str | None,
    *,
    request: RequestMeta,
    projects: ProjectStore,
    stage: str,
    salt: bytes,
    limiter: RateLimiter,
    sender: KafkaSender,
    topic: str,
    now_ms: Callable[[], int],
) -> CollectResult:
    """Validate, enrich and produce one request's events; 202 with per-event rejections.

    Events from a bot (for a project that drops them) or from a browser sending
    ``Sec-GPC: 1`` (for a project that honours it) are answered 202 with
    ``accepted: 0`` and the reason under ``dropped``: the client did nothing wrong.
    """
    check_content_type(request.header("content-type"))
    batch = parse_body(body.encode() if isinstance(body, str) else body or b"")
    if not batch.events:
        raise RequestError(
            f"none of the {len(batch.rejected)} events is valid; first problem at index "
            f"{batch.rejected[0]['index']}: {batch.rejected[0]['reason']}",
            field="events",
            code="no_valid_events",
        )
    project = authorise(projects, batch.api_key, stage=stage, origin=request.headers.get("origin"))
    client = _client_fields(project, request, salt)
    reason = None
    if client["is_bot"] and project.bot_policy == "drop":
        reason = "bot"
    elif project.honor_gpc and request.header("sec-gpc").strip() == "1":
        reason = "gpc"
    if reason is not None:
        return CollectResult(
            202, {"accepted": 0, "rejected": batch.rejected, "dropped": {"count": len(batch.events), "reason": reason}}
        )
    project_id = project.project_id
    limiter.allow(
        project_id, len(batch.events), rate=project.rate_limit, burst=max(project.rate_limit * 2, MAX_EVENTS_PER_BATCH)
    )
    received_at = now_ms()
    enriched = []
    rejected = list(batch.rejected)
    keep = keep_set(project.keep_params)
    for event in batch.events:
        out = enrich(
            event,
            project_id=project_id,
            sent_at_ms=batch.sent_at_ms,
            received_at_ms=received_at,
            client=client,
            keep=keep,
        )
        if received_at - cast(int, out["timestamp"]) > MAX_EVENT_AGE_MS:
            rejected.append({"index": event.index, "reason": STALE_REASON})
        else:
            enriched.append(out)
    rejected.sort(key=lambda item: cast(int, item["index"]))
    if not enriched:
        raise RequestError(
            f"none of the {len(rejected)} events can be stored; first problem at index "
            f"{rejected[0]['index']}: {rejected[0]['reason']}",
            field="events",
            code="no_valid_events",
        )
    messages = visitor_messages(enriched, project_id=project_id, schema_version=SCHEMA_VERSION)
    largest = max(len(value) for _, value, _ in messages)
    if largest > MAX_MESSAGE_BYTES:
        raise PayloadTooLargeError(
            f"this batch makes a {largest}-byte Kafka message; the limit is {MAX_MESSAGE_BYTES}: "
            "send its events in smaller batches",
            field="events",
            code="message_too_large",
        )
    sender.send(topic, messages)
    return CollectResult(202, {"accepted": len(enriched), "rejected": rejected})
