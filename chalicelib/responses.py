"""HTTP answers for TrackflowError: a JSON body naming the problem, and its headers."""

from __future__ import annotations

from chalicelib.errors import ServiceUnavailableError, TrackflowError

Headers = dict[str, str | list[str]]

JSON_HEADERS: Headers = {"Content-Type": "application/json"}


def error_parts(exc: TrackflowError) -> tuple[dict[str, object], int, Headers]:
    """(body, status, headers) for an error; 503s carry ``Retry-After``."""
    headers: Headers = dict(JSON_HEADERS)
    if isinstance(exc, ServiceUnavailableError):
        headers["Retry-After"] = str(exc.retry_after)
    return exc.to_dict(), exc.status, headers
