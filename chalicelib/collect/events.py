"""The collect wire format: parse a request body and validate each event in it.

A body is a JSON object::

    {"api_key": "YOUR_API_KEY", "sent_at": 1764180000000,
     "context": {...shared by every event...},
     "events": [{"event_id": "<uuid>", "type": "pageView", "ts": 1764179999000,
                 "props": {...}, "context": {...}}]}

Request-level problems (not JSON, no key, no events, too many) raise a
:class:`~chalicelib.errors.RequestError`; event-level problems reject that event
only, with its index and reason, and the rest go on. Timestamps are epoch
milliseconds or ISO-8601 strings. Limits are named constants below.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson

from chalicelib.collect.privacy import clean_props
from chalicelib.errors import PayloadTooLargeError, RequestError

MAX_BODY_BYTES = 256 * 1024
MAX_EVENTS_PER_BATCH = 100
MAX_TYPE_LENGTH = 64
MAX_KEY_LENGTH = 128
MAX_ID_LENGTH = 128
MAX_CONTEXT_STRING = 2048
MAX_PROP_STRING = 2048
MAX_PROP_KEY = 128
MAX_PROPS_DEPTH = 5
MAX_PROPS_ITEMS = 200
MAX_PROPS_BYTES = 16 * 1024
# 2000-01-01 .. 2100-01-01 in epoch ms: anything outside is a unit mistake.
MIN_TS_MS = 946_684_800_000
MAX_TS_MS = 4_102_444_800_000

UUID_PATTERN = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

CONTEXT_FIELDS = (
    "url",
    "referrer",
    "title",
    "screen",
    "language",
    "timezone",
    "anonymous_id",
    "session_id",
    "user_id",
    "environment",
    "sdk_version",
    # the session's campaign, kept by the tracker after the landing page's URL is gone
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
)


@dataclass(frozen=True)
class RawEvent:
    """One validated event as the client sent it (before enrichment)."""

    index: int
    event_id: str
    type: str
    ts_ms: int
    props_json: str
    context: dict[str, str]


@dataclass
class Batch:
    """A parsed request: its key, the client's send time, valid events and rejections."""

    api_key: str
    sent_at_ms: int | None
    events: list[RawEvent] = field(default_factory=list)
    rejected: list[dict[str, object]] = field(default_factory=list)


class EventError(ValueError):
    """One event is invalid; ``str(exc)`` is the reason given back to the client."""


def parse_timestamp(value: object, name: str) -> int:
    """Epoch milliseconds from a number of ms or an ISO-8601 string."""
    if isinstance(value, bool) or value is None:
        raise EventError(f"{name} must be epoch milliseconds or an ISO-8601 string")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise EventError(f"{name} must be a finite number")
        ms = int(value)
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise EventError(f"{name} is not an ISO-8601 timestamp") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        ms = int(parsed.timestamp() * 1000)
    else:
        raise EventError(f"{name} must be epoch milliseconds or an ISO-8601 string")
    if not MIN_TS_MS <= ms <= MAX_TS_MS:
        raise EventError(f"{name} is out of range (expected epoch milliseconds between 2000 and 2100)")
    return ms


def _check_props(value: object, depth: int, budget: list[int]) -> None:
    if depth > MAX_PROPS_DEPTH:
        raise EventError(f"props nested deeper than {MAX_PROPS_DEPTH} levels")
    if isinstance(value, dict):
        budget[0] -= len(value)
        for key, item in value.items():
            if len(key) > MAX_PROP_KEY:
                raise EventError(f"props key longer than {MAX_PROP_KEY} characters")
            if isinstance(item, (dict, list)):
                _check_props(item, depth + 1, budget)
            elif isinstance(item, str) and len(item) > MAX_PROP_STRING:
                raise EventError(f"props.{key} longer than {MAX_PROP_STRING} characters")
    elif isinstance(value, list):
        budget[0] -= len(value)
        for item in value:
            if isinstance(item, (dict, list)):
                _check_props(item, depth + 1, budget)
            elif isinstance(item, str) and len(item) > MAX_PROP_STRING:
                raise EventError(f"props string longer than {MAX_PROP_STRING} characters")
    if budget[0] < 0:
        raise EventError(f"props has more than {MAX_PROPS_ITEMS} keys and items")


_CONTEXT_LIMITS = {name: MAX_CONTEXT_STRING for name in CONTEXT_FIELDS} | {
    "anonymous_id": MAX_ID_LENGTH,
    "session_id": MAX_ID_LENGTH,
    "user_id": MAX_ID_LENGTH,
}


def _context(raw: object, shared: dict[str, str]) -> dict[str, str]:
    """``shared`` overridden by the known string fields of ``raw``; unknown keys are dropped."""
    if raw is None:
        return shared
    if not isinstance(raw, dict):
        raise EventError("context must be an object")
    merged = dict(shared)
    for name, value in raw.items():
        limit = _CONTEXT_LIMITS.get(name)
        if limit is None or value is None:
            continue
        if type(value) is not str:
            raise EventError(f"context.{name} must be a string")
        if len(value) > limit:
            raise EventError(f"context.{name} longer than {limit} characters")
        merged[name] = value
    return merged


def validate_event(index: int, raw: object, shared: dict[str, str]) -> RawEvent:
    """Validate one event object; raise :class:`EventError` with the reason."""
    if not isinstance(raw, dict):
        raise EventError("event must be an object")
    event_id = raw.get("event_id")
    if not isinstance(event_id, str):
        raise EventError("event_id must be a UUID string")
    if UUID_PATTERN.fullmatch(event_id) is None:
        raise EventError("event_id is not a valid UUID (expected the 8-4-4-4-12 hex form)")
    event_id = event_id.lower()
    etype = raw.get("type")
    if not isinstance(etype, str) or not etype:
        raise EventError("type must be a non-empty string")
    if len(etype) > MAX_TYPE_LENGTH or not etype.isprintable():
        raise EventError(f"type must be at most {MAX_TYPE_LENGTH} printable characters")
    ts_ms = parse_timestamp(raw.get("ts"), "ts")
    props = raw.get("props")
    props_json = "{}"
    if props is not None:
        if not isinstance(props, dict):
            raise EventError("props must be an object")
        if props:
            _check_props(props, 1, [MAX_PROPS_ITEMS])
            encoded = orjson.dumps(clean_props(props))
            if len(encoded) > MAX_PROPS_BYTES:
                raise EventError(f"props larger than {MAX_PROPS_BYTES} bytes")
            props_json = encoded.decode()
    context = _context(raw.get("context"), shared)
    return RawEvent(index, event_id, etype, ts_ms, props_json, context)


def parse_body(body: bytes) -> Batch:
    """Parse and validate a collect body. Raises RequestError for request-level faults."""
    if len(body) > MAX_BODY_BYTES:
        raise PayloadTooLargeError(f"body is {len(body)} bytes; the limit is {MAX_BODY_BYTES}", field="body")
    if not body.strip():
        raise RequestError("body is empty; send a JSON object with api_key and events", field="body", code="empty_body")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestError(f"body is not valid JSON: {exc}", field="body", code="invalid_json") from None
    if not isinstance(doc, dict):
        raise RequestError("body must be a JSON object", field="body", code="invalid_body")
    api_key = doc.get("api_key")
    if not isinstance(api_key, str) or not api_key.strip():
        raise RequestError("api_key is required and must be a non-empty string", field="api_key")
    if len(api_key) > MAX_KEY_LENGTH:
        raise RequestError(f"api_key longer than {MAX_KEY_LENGTH} characters", field="api_key")
    sent_at = doc.get("sent_at")
    try:
        sent_at_ms = None if sent_at is None else parse_timestamp(sent_at, "sent_at")
    except EventError as exc:
        raise RequestError(str(exc), field="sent_at") from None
    raw_events = doc.get("events")
    if not isinstance(raw_events, list):
        raise RequestError("events must be a list of event objects", field="events")
    if not raw_events:
        raise RequestError("events is empty; send at least one event", field="events", code="empty_batch")
    if len(raw_events) > MAX_EVENTS_PER_BATCH:
        raise PayloadTooLargeError(
            f"{len(raw_events)} events in one batch; the limit is {MAX_EVENTS_PER_BATCH}",
            field="events",
            code="too_many_events",
        )
    try:
        shared = _context(doc.get("context"), {})
    except EventError as exc:
        raise RequestError(str(exc), field="context") from None
    batch = Batch(api_key=api_key, sent_at_ms=sent_at_ms)
    for index, raw in enumerate(raw_events):
        try:
            batch.events.append(validate_event(index, raw, shared))
        except EventError as exc:
            batch.rejected.append({"index": index, "reason": str(exc)})
    return batch
