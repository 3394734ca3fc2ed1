"""Enrichment: turn a validated client event into the normalised event put on Kafka.

Request-level facts (user agent, browser, OS, device, bot flag, country,
visitor hash) come in as ``client``, computed once per request by
:mod:`chalicelib.collect.client_info`.

Adds the server's ``received_at``, corrects the client's timestamp for clock skew
(using the batch's ``sent_at``), splits the URL into host/path/query, keeps UTM
parameters, and reduces the referrer to its domain. URLs (the page's, the
referrer's, a click's ``href``) are cleaned of query parameters the project
does not keep first (:mod:`chalicelib.collect.privacy`). The output is a flat dict of
JSON scalars (``props`` stays a JSON string) so the ingest side can build a row
without walking nested objects. ``SCHEMA_VERSION`` is stamped on each message.
"""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import unquote_plus, urlsplit

import orjson

from chalicelib.collect.events import RawEvent
from chalicelib.collect.privacy import DEFAULT_PARAMS, clean_url, clean_value

# 2: the fields a message's events share are sent once, under "shared" (1 repeated them in every event).
SCHEMA_VERSION = 2
UTM_KEYS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
# A client clock may be wrong, but an event can't happen after the server got it.
MAX_FUTURE_MS = 0
# The oldest event accepted, measured back from when the server got it (after
# clock-skew correction). Bounds what one batch can spread over (monthly
# partitions, rollup days) and covers a tracker's offline queue.
MAX_EVENT_AGE_DAYS = 31
MAX_EVENT_AGE_MS = MAX_EVENT_AGE_DAYS * 86_400_000


def corrected_timestamp(ts_ms: int, *, sent_at_ms: int | None, received_at_ms: int) -> int:
    """The event time on the server's clock.

    The client stamped ``ts_ms`` and ``sent_at_ms`` with the same (possibly wrong)
    clock; their difference is how long the event waited in the browser. That wait,
    measured back from ``received_at_ms``, is the real time. Without ``sent_at`` the
    client time is kept; either way the result never lies in the future.
    """
    if sent_at_ms is not None:
        ts_ms = received_at_ms - max(0, sent_at_ms - ts_ms)
    return min(ts_ms, received_at_ms + MAX_FUTURE_MS)


# A batch's events share their page, and popular pages repeat across requests:
# both URL functions are pure, so a small cache saves most of their cost.
@lru_cache(maxsize=4096)
def split_url(url: str) -> tuple[str, str, str, tuple[tuple[str, str], ...]]:
    """(host, path, query, utm pairs) of a page URL; empty parts for a malformed one.

    UTM values are the first of each key, percent-decoded as a form would be. A
    fragment that is a route (``#/cart``, ``#!/cart``: what hash routers and
    tracker.hash.js send) stays in the path; any other fragment is an anchor.
    """
    if not url:
        return "", "", "", ()
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
    except ValueError:
        return "", "", "", ()
    utm: dict[str, str] = {}
    if "utm_" in parts.query:
        for pair in parts.query.split("&"):
            if pair.startswith("utm_"):
                key, _, value = pair.partition("=")
                if key in UTM_KEYS and key not in utm:
                    utm[key] = unquote_plus(value)
    path = parts.path or "/"
    if parts.fragment.startswith(("/", "!/")):
        path += "#" + parts.fragment
    return host, path, parts.query, tuple(utm.items())


@lru_cache(maxsize=4096)
def referrer_domain(referrer: str) -> str:
    """The referrer's host without ``www.``; empty when there is none or it is malformed."""
    if not referrer:
        return ""
    try:
        host = (urlsplit(referrer).hostname or "").lower()
    except ValueError:
        return ""
    return _without_www(host)


def _without_www(host: str) -> str:
    return host[4:] if host.startswith("www.") else host


def _external(domain: str, page_host: str) -> str:
    """The referrer's domain, or nothing when it is the page's own site (a self-referral)."""
    return "" if domain == _without_www(page_host) else domain


def _clean_href(props_json: str, keep: frozenset[str]) -> str:
    """A click's properties with the link's query cleaned like the page URL's."""
    if '"href"' not in props_json:
        return props_json
    props = orjson.loads(props_json)
    href = props.get("href")
    if not isinstance(href, str) or clean_url(href, keep) == href:
        return props_json
    props["href"] = clean_url(href, keep)
    return orjson.dumps(props).decode()


def enrich(
    event: RawEvent,
    *,
    project_id: str,
    sent_at_ms: int | None,
    received_at_ms: int,
    client: dict[str, object],
    keep: frozenset[str] = DEFAULT_PARAMS,
) -> dict[str, object]:
    """The normalised event for Kafka and ClickHouse; URLs keep only the query parameters in ``keep``
    (:mod:`chalicelib.collect.privacy`)."""
    ctx = event.context
    url = clean_url(ctx.get("url", ""), keep)
    host, path, query, utm_pairs = split_url(url)
    utm = dict(utm_pairs)
    referrer = clean_url(ctx.get("referrer", ""), keep)
    out: dict[str, object] = {
        "event_id": event.event_id,
        "type": event.type,
        "project_id": project_id,
        "timestamp": corrected_timestamp(event.ts_ms, sent_at_ms=sent_at_ms, received_at_ms=received_at_ms),
        "client_ts": event.ts_ms,
        "received_at": received_at_ms,
        "anonymous_id": ctx.get("anonymous_id", ""),
        "session_id": ctx.get("session_id", ""),
        "user_id": ctx.get("user_id", ""),
        "url": url,
        "url_host": host,
        "url_path": path,
        "url_query": query,
        "referrer": referrer,
        "referrer_domain": _external(referrer_domain(referrer), host),
        "title": ctx.get("title", ""),
        "screen": ctx.get("screen", ""),
        "language": ctx.get("language", ""),
        "timezone": ctx.get("timezone", ""),
        "environment": ctx.get("environment", ""),
        "sdk_version": ctx.get("sdk_version", ""),
        "props": _clean_href(event.props_json, keep) if event.type == "click" else event.props_json,
    }
    for key in UTM_KEYS:
        # The page URL's own campaign wins; else the one the tracker kept for the session.
        out[key] = clean_value(utm.get(key) or ctx.get(key, ""))
    out.update(client)
    return out
