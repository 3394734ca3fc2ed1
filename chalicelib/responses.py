"""HTTP answers for TrackflowError: a JSON body naming the problem, and its headers.

503 and 429 answers carry ``Retry-After``.
"""

from __future__ import annotations

import re
from types import MappingProxyType

from chalicelib.errors import TrackflowError

Headers = dict[str, str | list[str]]

# Read-only: Chalice adds a route's CORS headers into the dict a Response is given, so a shared dict
# passed as is would carry one route's `Access-Control-Allow-Origin: *` into every later answer.
# Answers take a copy (`dict(JSON_HEADERS)`, `JSON_HEADERS | {...}`).
JSON_HEADERS: MappingProxyType[str, str] = MappingProxyType({"Content-Type": "application/json"})


def error_parts(exc: TrackflowError) -> tuple[dict[str, object], int, Headers]:
    """(body, status, headers) for an error; one that says when to retry (503, 429) carries ``Retry-After``."""
    headers: Headers = dict(JSON_HEADERS)
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return exc.to_dict(), exc.status, headers


# What a browser sends as Origin: scheme://host[:port], or "null". Anything else is never echoed
# (a header value with a line break or control character would make the answer itself invalid).
_ORIGIN = re.compile(r"^(null|[a-z][a-z0-9+.-]*://[A-Za-z0-9.\-\[\]:]+)$", re.ASCII)


def cors_headers(origin: str | None, *, allowed: bool = True) -> Headers:
    """CORS for collect: echo the page's origin when its project accepts it, never a wildcard."""
    if not origin or not allowed or len(origin) > 300 or not _ORIGIN.match(origin):
        return {"Vary": "Origin"}
    return {"Access-Control-Allow-Origin": origin, "Access-Control-Expose-Headers": "Retry-After", "Vary": "Origin"}


def preflight_headers(origin: str | None) -> Headers:
    """The answer to a CORS preflight: it carries no API key, so the POST itself is what is checked."""
    headers = cors_headers(origin)
    headers.update(
        {
            "Access-Control-Allow-Methods": "POST, OPTIONS",
            "Access-Control-Allow-Headers": "Content-Type",
            "Access-Control-Max-Age": "86400",
        }
    )
    return headers
