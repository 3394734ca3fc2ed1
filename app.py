"""TrackFlow's Chalice app: routes and Lambda handlers, wiring only.

Each handler reads the request or event, calls one ``chalicelib`` function and
turns its result (or its ``TrackflowError``) into a response. Heavy clients are
built lazily by ``chalicelib.runtime`` so a cold start stays cheap.
"""

from __future__ import annotations

from typing import Any

import orjson
from chalice import Chalice, CORSConfig, Response

from chalicelib import runtime
from chalicelib.errors import TrackflowError
from chalicelib.responses import JSON_HEADERS, cors_headers, error_parts, preflight_headers

app = Chalice(app_name="trackflow")

# CORS for collect is answered per project (the allowed origins), not by Chalice.
_COLLECT_ROUTE: dict[str, Any] = {"methods": ["POST", "OPTIONS"], "content_types": ["*/*"]}


def _error(exc: TrackflowError, extra: dict[str, Any] | None = None) -> Response:
    body, status, headers = error_parts(exc)
    return Response(body=body, status_code=status, headers=headers | (extra or {}))


def _collect() -> Response:
    from chalicelib.collect import RequestMeta, collect

    request = app.current_request
    assert request is not None  # Chalice sets it before calling a route
    origin = request.headers.get("origin")
    if request.method == "OPTIONS":
        return Response(body="", status_code=204, headers=preflight_headers(origin))
    try:
        conf = runtime.settings()
        result = collect(
            request.raw_body,
            request=RequestMeta(
                headers=request.headers,  # case-insensitive
                source_ip=(request.context.get("identity") or {}).get("sourceIp"),
            ),
            projects=runtime.projects(),
            stage=conf.stage,
            salt=runtime.daily_salt(),
            limiter=runtime.limiter(),
            sender=runtime.sender(),
            topic=conf.events_topic,
            now_ms=runtime.now_ms,
        )
    except TrackflowError as exc:
        return _error(exc, cors_headers(origin, allowed=exc.code != "origin_not_allowed"))
    # Serialised here with orjson: Chalice would use the slower json module.
    headers = JSON_HEADERS | cors_headers(origin)
    return Response(body=orjson.dumps(result.body).decode(), status_code=result.status, headers=headers)


@app.route("/v1/collect", **_COLLECT_ROUTE)
def collect_v1() -> Response:
    return _collect()


@app.route("/collect", **_COLLECT_ROUTE)
def collect_legacy() -> Response:
    return _collect()


@app.route(
    "/v1/config/{api_key}", methods=["GET"], cors=CORSConfig(allow_origin="*", expose_headers=["ETag"], max_age=86400)
)
def tracker_config(api_key: str) -> Response:
    from chalicelib.config_api import tracker_config as answer

    request = app.current_request
    assert request is not None
    try:
        result = answer(
            runtime.projects(),
            api_key,
            stage=runtime.settings().stage,
            if_none_match=request.headers.get("if-none-match"),
        )
    except TrackflowError as exc:
        return _error(exc)
    return Response(body=result.body, status_code=result.status, headers=dict(result.headers))


@app.route("/health", methods=["GET"], cors=True)
def health() -> dict[str, str]:
    return {"status": "ok", "stage": runtime.settings().stage}


@app.lambda_function(name="ingest")
def ingest(event: dict[str, Any], context: Any) -> dict[str, int]:
    from chalicelib.ingest import ingest as ingest_batch

    conf = runtime.settings()
    return ingest_batch(
        event, writer=runtime.writer(), dlq=runtime.sender(), dlq_topic=conf.dlq_topic, now_ms=runtime.now_ms
    )
