"""The config function: what the tracker may do for a project, cacheable.

``GET /v1/config/{api_key}`` answers the project's tracker settings with an
``ETag`` and ``Cache-Control``; a matching ``If-None-Match`` gets 304 and no
body. A disabled project gets 200 with ``"enabled": false`` (cacheable like any
answer: tracker.config.js stops for the session); an unknown key gets a 404
JSON error.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from chalicelib.errors import RequestError
from chalicelib.projects import ProjectStore, resolve_key

CACHE_CONTROL = "public, max-age=300"


class UnknownKeyError(RequestError):
    code = "unknown_key"
    status = 404


@dataclass(frozen=True)
class ConfigAnswer:
    status: int
    body: str
    headers: dict[str, str]


def tracker_config(store: ProjectStore, api_key: str, *, stage: str, if_none_match: str | None) -> ConfigAnswer:
    project = resolve_key(store, api_key, stage=stage)
    if project is None:
        raise UnknownKeyError(f"no project has the API key {api_key[:64]!r}", field="api_key")
    public = project.tracker.to_public(enabled=project.enabled)
    body = json.dumps(public, sort_keys=True, separators=(",", ":"))
    etag = '"' + hashlib.sha256(body.encode()).hexdigest()[:32] + '"'
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL, "Content-Type": "application/json"}
    if if_none_match is not None and etag in {tag.strip() for tag in if_none_match.split(",")}:
        return ConfigAnswer(304, "", headers)
    return ConfigAnswer(200, body, headers)
