"""The API behind a Lambda function URL: payload 2.0 in, the same Chalice routes, payload 2.0 out.

A function URL hands its function an HTTP API "payload format 2.0" event;
Chalice's routes read the API Gateway REST proxy ("1.0") event. ``rest_event``
rewrites one into the other, matching the path to a route as API Gateway
would, so collect, config, stats and health run one code path behind both
front doors. ``url_response`` turns Chalice's answer into the 2.0 shape
(headers with several values are joined, ``Set-Cookie`` goes to ``cookies``).

Query values arrive decoded in a REST event and raw in ``rawQueryString``
here; they are decoded the same way (``+`` and ``%xx``, UTF-8), so a stats
filter on a Unicode page path reads the same through either door.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, unquote

from chalicelib.errors import RequestError
from chalicelib.responses import error_parts

_PARAM = re.compile(r"^\{(\w+)\}$")
# Not on the public URL: in Lambda each instance has its own Prometheus counters,
# so /metrics would show one instance's; the metrics are in CloudWatch (EMF) instead.
NOT_ON_THE_URL = {"/metrics": "metrics are in CloudWatch (namespace TrackFlow), not on the public function URL"}


class RouteNotFoundError(RequestError):
    """No route has this path (API Gateway answers such a request itself)."""

    code = "not_found"
    status = 404


def _match(path: str, routes: Mapping[str, Any]) -> tuple[str, dict[str, str]] | None:
    """The route template for ``path`` and its path parameters; literal segments win over parameters."""
    segments = path.rstrip("/").split("/") if path != "/" else [""]
    best: tuple[int, str, dict[str, str]] | None = None
    for template in routes:
        parts = template.rstrip("/").split("/") if template != "/" else [""]
        if len(parts) != len(segments):
            continue
        params: dict[str, str] = {}
        for part, segment in zip(parts, segments, strict=True):
            name = _PARAM.match(part)
            if name and segment:
                params[name.group(1)] = unquote(segment)
            elif part != segment:
                break
        else:
            literal = len(parts) - len(params)
            if best is None or literal > best[0]:
                best = (literal, template, params)
    return None if best is None else (best[1], best[2])


def rest_event(event: Mapping[str, Any], routes: Mapping[str, Any]) -> dict[str, Any]:
    """The API Gateway REST proxy event equivalent to a function URL event; raises RouteNotFoundError."""
    http = event["requestContext"]["http"]
    path = event.get("rawPath") or http.get("path") or "/"
    matched = _match(path, routes)
    if matched is None:
        raise RouteNotFoundError(f"no route for {http['method']} {path}; see docs/openapi.yaml")
    template, params = matched
    if template in NOT_ON_THE_URL:
        raise RouteNotFoundError(f"{path}: {NOT_ON_THE_URL[template]}")
    headers = dict(event.get("headers") or {})
    if event.get("cookies"):
        headers["cookie"] = "; ".join(event["cookies"])
    query = parse_qs(event.get("rawQueryString") or "", keep_blank_values=True)
    return {
        "resource": template,
        "path": path,
        "httpMethod": http["method"],
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "queryStringParameters": {name: values[-1] for name, values in query.items()} or None,
        "multiValueQueryStringParameters": query or None,
        "pathParameters": params or None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": template,
            "httpMethod": http["method"],
            "path": path,
            "stage": event["requestContext"].get("stage", "$default"),
            "requestId": event["requestContext"].get("requestId", ""),
            "identity": {"sourceIp": http.get("sourceIp"), "userAgent": http.get("userAgent")},
        },
        "body": event.get("body"),
        "isBase64Encoded": bool(event.get("isBase64Encoded")),
    }


def preflight(route: Any) -> dict[str, Any]:
    """A CORS preflight for a route whose CORS API Gateway would answer (the function URL's own CORS does, when set)."""
    cors: Any = getattr(route, "cors", None)
    headers: dict[str, str] = cors.get_access_control_headers() if hasattr(cors, "get_access_control_headers") else {}
    headers.setdefault("Access-Control-Allow-Origin", "*")
    headers["Access-Control-Allow-Methods"] = "GET, OPTIONS"
    return {"statusCode": 204, "headers": headers, "body": ""}


def url_response(response: Mapping[str, Any]) -> dict[str, Any]:
    """Chalice's REST proxy answer as a function URL answer."""
    headers: dict[str, str] = dict(response.get("headers") or {})
    cookies: list[str] = []
    for name, values in (response.get("multiValueHeaders") or {}).items():
        if name.lower() == "set-cookie":
            cookies.extend(values)
        else:
            headers[name] = ", ".join(values)
    answer: dict[str, Any] = {
        "statusCode": response["statusCode"],
        "headers": headers,
        "body": response.get("body") or "",
        "isBase64Encoded": bool(response.get("isBase64Encoded")),
    }
    if cookies:
        answer["cookies"] = cookies
    return answer


def error_response(exc: RequestError) -> dict[str, Any]:
    """A TrackflowError raised before any route ran, as a function URL answer."""
    body, status, headers = error_parts(exc)
    return {"statusCode": status, "headers": dict(headers), "body": json.dumps(body)}
