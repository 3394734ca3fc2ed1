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
from chalicelib.errors import RequestError, UnsupportedMediaTypeError
from chalicelib.events import parse_body
from chalicelib.producer import KafkaSender, visitor_messages

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


def collect(
    body: bytes | str | None,
    *,
    content_type: str,
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
    received_at = now_ms()
    project_id = batch.api_key
    enriched = [
        enrich(
            event, project_id=project_id, sent_at_ms=batch.sent_at_ms, received_at_ms=received_at, user_agent=user_agent
        )
        for event in batch.events
    ]
    sender.send(topic, visitor_messages(enriched, project_id=project_id, schema_version=SCHEMA_VERSION))
    return CollectResult(202, {"accepted": len(enriched), "rejected": batch.rejected})
