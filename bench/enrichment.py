"""What each step of the collect path costs, per request, in CPU microseconds.

Runs each step alone over the same realistic requests (5 events each, several
distinct browsers), in-process and without Kafka, so the note can say where
collect's time goes. Each figure is a median of 5 passes.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import tracker_bodies
from chalicelib.collect.client_info import client_ip, country, daily_salt, parse_agent, visitor_hash
from chalicelib.collect.enrich import enrich
from chalicelib.collect.events import parse_body
from chalicelib.collect.service import RequestMeta, _client_fields
from chalicelib.projects import CachedProjectStore, SqliteProjectStore, new_project, resolve_key

AGENTS = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:140.0) Gecko/20100101 Firefox/140.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Mobile Safari/537.36",
]


def _per_call_us(fn: Callable[[int], Any], n: int) -> float:
    runs = []
    for _ in range(5):
        start = time.process_time()
        for i in range(n):
            fn(i)
        runs.append((time.process_time() - start) / n * 1e6)
    return statistics.median(runs)


def run(data_dir: Path, *, requests: int = 2000) -> dict[str, float]:
    bodies = tracker_bodies(requests, events_per_request=5)
    store = CachedProjectStore(SqliteProjectStore(data_dir / "enrichment-projects.sqlite3"))
    project = new_project("Bench")
    store.put(project)
    key = project.api_keys[0]
    salt = daily_salt(b"bench")
    headers = [
        {"user-agent": AGENTS[i % len(AGENTS)], "x-forwarded-for": f"203.0.113.{i % 250}"} for i in range(requests)
    ]
    batches = [parse_body(b) for b in bodies]
    fresh = itertools.count()  # a new string every call: every parse misses the cache
    first_parse = _per_call_us(lambda i: parse_agent(f"{AGENTS[i % len(AGENTS)]} v{next(fresh)}"), 200)
    client = _client_fields(project, RequestMeta(headers=headers[0]), salt)
    return {
        "step_parse_and_validate_us_per_request": _per_call_us(lambda i: parse_body(bodies[i]), requests),
        "step_project_lookup_us_per_request": _per_call_us(lambda i: resolve_key(store, key, stage="prod"), requests),
        "step_user_agent_uncached_us": first_parse,
        "step_user_agent_cached_us_per_request": _per_call_us(
            lambda i: parse_agent(headers[i]["user-agent"]), requests
        ),
        "step_country_ip_hash_us_per_request": _per_call_us(
            lambda i: (
                country(headers[i]),
                visitor_hash(salt, project_id="p", ip=client_ip(headers[i], None), user_agent=headers[i]["user-agent"]),
            ),
            requests,
        ),
        "step_enrich_events_us_per_request": _per_call_us(
            lambda i: [
                enrich(e, project_id="p", sent_at_ms=batches[i].sent_at_ms, received_at_ms=1, client=client)
                for e in batches[i].events
            ],
            requests,
        ),
    }
