"""TrackFlow's Chalice app: routes and Lambda handlers, wiring only.

Each handler reads the request or event, calls one ``chalicelib`` function and
turns its result (or its ``TrackflowError``) into a response. Heavy clients are
built lazily by ``chalicelib.runtime`` so a cold start stays cheap.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from chalice import Chalice, CORSConfig, Rate, Response

from chalicelib import metrics, runtime
from chalicelib.errors import ServiceUnavailableError, TrackflowError
from chalicelib.responses import JSON_HEADERS, cors_headers, error_parts, preflight_headers

app = Chalice(app_name="trackflow")


@app.middleware("http")
def count_requests(event: Any, get_response: Any) -> Response:
    response = get_response(event)
    route = (event.context or {}).get("resourcePath") or event.path
    metrics.record_request(route, response.status_code)
    metrics.end_invocation()  # one EMF line per request, with what the route measured
    return response


# CORS for collect is answered per project (the allowed origins), not by Chalice.
_COLLECT_ROUTE: dict[str, Any] = {"methods": ["POST", "OPTIONS"], "content_types": ["*/*"]}


def _error(exc: TrackflowError, extra: dict[str, Any] | None = None) -> Response:
    body, status, headers = error_parts(exc)
    return Response(body=body, status_code=status, headers=headers | (extra or {}))


def _collect() -> Response:
    from chalicelib.collect.service import RequestMeta, collect

    request = app.current_request
    assert request is not None  # Chalice sets it before calling a route
    origin = request.headers.get("origin")
    if request.method == "OPTIONS":
        return Response(body="", status_code=204, headers=preflight_headers(origin))
    try:
        if runtime.draining():
            raise ServiceUnavailableError("the server is shutting down; send again in a few seconds")
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
        metrics.record_refused(exc.code)
        return _error(exc, cors_headers(origin, allowed=exc.code != "origin_not_allowed"))
    metrics.record_collect(result.body)
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


# Read tokens travel in the Authorization header, never cookies, so any origin
# may call the stats API (a dashboard can be hosted anywhere).
_STATS_CORS = CORSConfig(allow_origin="*", allow_headers=["Authorization"], max_age=600)


def _stats(report: str, dimension: str | None = None) -> Response:
    from chalicelib.stats.api import answer

    request = app.current_request
    assert request is not None
    try:
        body = answer(
            report,
            request.query_params,
            authorization=request.headers.get("authorization"),
            projects=runtime.projects(),
            reader=runtime.reader,
            stage=runtime.settings().stage,
            now_ms=runtime.now_ms,
            dimension=dimension,
        )
    except TrackflowError as exc:
        return _error(exc)
    return Response(
        body=orjson.dumps(body).decode(), status_code=200, headers={**JSON_HEADERS, "Cache-Control": "no-store"}
    )


@app.route("/v1/stats/projects", methods=["GET"], cors=_STATS_CORS)
def stats_projects() -> Response:
    return _stats("projects")


@app.route("/v1/stats/overview", methods=["GET"], cors=_STATS_CORS)
def stats_overview() -> Response:
    return _stats("overview")


@app.route("/v1/stats/timeseries", methods=["GET"], cors=_STATS_CORS)
def stats_timeseries() -> Response:
    return _stats("timeseries")


@app.route("/v1/stats/breakdown/{dimension}", methods=["GET"], cors=_STATS_CORS)
def stats_breakdown(dimension: str) -> Response:
    return _stats("breakdown", dimension)


@app.route("/v1/stats/breakdowns", methods=["GET"], cors=_STATS_CORS)
def stats_breakdowns() -> Response:
    return _stats("breakdowns")


@app.route("/v1/stats/errors", methods=["GET"], cors=_STATS_CORS)
def stats_errors() -> Response:
    return _stats("errors")


@app.route("/v1/stats/events", methods=["GET"], cors=_STATS_CORS)
def stats_events() -> Response:
    return _stats("events")


@app.route("/v1/stats/clicks", methods=["GET"], cors=_STATS_CORS)
def stats_clicks() -> Response:
    return _stats("clicks")


@app.route("/v1/stats/goals", methods=["GET"], cors=_STATS_CORS)
def stats_goals() -> Response:
    return _stats("goals")


@app.route("/v1/stats/funnel", methods=["GET"], cors=_STATS_CORS)
def stats_funnel() -> Response:
    return _stats("funnel")


@app.route("/v1/stats/realtime", methods=["GET"], cors=_STATS_CORS)
def stats_realtime() -> Response:
    return _stats("realtime")


@app.route(
    "/v1/stats/export",
    methods=["GET"],
    cors=CORSConfig(allow_origin="*", allow_headers=["Authorization"], expose_headers=["X-Next-Cursor"], max_age=600),
)
def stats_export() -> Response:
    from chalicelib.ownership.api import export

    request = app.current_request
    assert request is not None
    try:
        body, media_type, cursor = export(
            request.query_params,
            authorization=request.headers.get("authorization"),
            projects=runtime.projects(),
            reader=runtime.reader,
            stage=runtime.settings().stage,
            now_ms=runtime.now_ms,
        )
    except TrackflowError as exc:
        return _error(exc)
    headers: dict[str, str | list[str]] = {"Content-Type": media_type, "Cache-Control": "no-store"}
    if cursor is not None:
        headers["X-Next-Cursor"] = cursor
    return Response(body=body.decode(), status_code=200, headers=headers)


@app.route(
    "/v1/projects/{project}/people",
    methods=["DELETE"],
    cors=CORSConfig(allow_origin="*", allow_headers=["Authorization"], max_age=600),
)
def erase_person(project: str) -> Response:
    from chalicelib.ownership.api import erase_request
    from chalicelib.rollups.compaction import rebuild

    request = app.current_request
    assert request is not None
    try:
        receipt = erase_request(
            project,
            request.query_params,
            authorization=request.headers.get("authorization"),
            projects=runtime.projects(),
            client=runtime.rollup_client,
            rebuild=rebuild,
            stage=runtime.settings().stage,
            now_ms=runtime.now_ms,
            cluster=runtime.settings().clickhouse.cluster,
        )
    except TrackflowError as exc:
        return _error(exc)
    return Response(body=orjson.dumps(receipt).decode(), status_code=200, headers=dict(JSON_HEADERS))


@app.route("/health", methods=["GET"], cors=True)
def health() -> Response:
    from chalicelib.health import cached_check

    conf = runtime.settings()
    body = cached_check(conf, reader=runtime.reader, sender=runtime.sender)
    return Response(body=body, status_code=200 if body["status"] == "ok" else 503, headers=dict(JSON_HEADERS))


@app.route("/metrics", methods=["GET"])
def prometheus_metrics() -> Response:
    body, content_type = metrics.exposition()
    return Response(body=body.decode(), status_code=200, headers={"Content-Type": content_type})


@app.lambda_function(name="url_handler")
def function_url(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Every route behind a Lambda function URL (payload 2.0): the handlers API Gateway calls, reused."""
    from chalicelib.function_url import RouteNotFoundError, error_response, preflight, rest_event, url_response

    try:
        rest = rest_event(event, app.routes)
    except RouteNotFoundError as exc:
        return error_response(exc)
    methods = app.routes[rest["resource"]]
    if rest["httpMethod"] == "OPTIONS" and "OPTIONS" not in methods:
        return preflight(next(iter(methods.values())))
    return url_response(app(rest, context))


@app.lambda_function(name="ingest")
def ingest(event: dict[str, Any], context: Any) -> dict[str, int]:
    from chalicelib.ingest import ingest as ingest_batch

    conf = runtime.settings()
    started = time.perf_counter()
    try:
        result = ingest_batch(
            event,
            writer=runtime.writer(),
            dlq=runtime.sender(),
            dlq_topic=conf.dlq_topic,
            now_ms=runtime.now_ms,
            erased=runtime.erased_ids(),
        )
        metrics.record_ingest(result, time.perf_counter() - started)
    finally:
        metrics.end_invocation()  # a failed invocation's measurements are its own line, not the next one's
    return result


@app.schedule(Rate(1, unit=Rate.MINUTES), name="compact")
def compact(event: Any) -> dict[str, float]:
    """Chalice calls a scheduled handler with one argument, its event object; ``event.context`` is Lambda's."""
    from chalicelib.rollups.compaction import backlog, compact_all

    context = getattr(event, "context", None)
    seconds_left = context.get_remaining_time_in_millis() / 1000 if context is not None else 60.0
    conf = runtime.settings()
    client = runtime.rollup_client()
    started = time.monotonic()
    try:
        done = compact_all(
            client,
            settle_s=conf.rollup_settle_s,
            deadline=started + max(1.0, seconds_left - 10),
            replica_lag_s=conf.clickhouse.replica_lag_s,
        )
        waiting = backlog(client, settle_s=conf.rollup_settle_s)
        metrics.record_compaction(done.hours, time.monotonic() - started, waiting)
        expired = runtime.expire_if_due()  # retention rides on this schedule: a run every few hours
    finally:
        metrics.end_invocation()
    return {
        "hours": done.hours,
        "days": done.days,
        "day_prefixes": done.prefixes,
        "backlog_hours": waiting.hours,
        "backlog_rows": waiting.rows,
        "pending_age_s": round(waiting.pending_age_s, 1),
        "raw_tail_s": round(waiting.raw_tail_s, 1),
        "rewrite_hours": waiting.rewrite_hours,
        "expired_rows": sum(expired.rows.values()) if expired is not None else 0,
    }
