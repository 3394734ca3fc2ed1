"""``trackflow load``: realistic made-up traffic, into the pipeline or straight into the table.

:class:`Traffic` simulates visitors of a few projects: sessions with an
entry page and SPA navigation, referrers and UTM campaigns, clicks, errors,
custom events, and a share of bots, spread over ``days`` with more traffic in
the afternoon. It yields the same normalised events collect would produce, so
they can be produced to Kafka (the trigger then ingests them) or written to the
events table directly (the rollups fill as they would from the pipeline).
Seeded: the same seed gives the same events.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from chalicelib.collect.enrich import SCHEMA_VERSION
from chalicelib.kafka.records import KafkaRecord
from chalicelib.projects import DEV_PROJECT_ID, DEV_STAGES, Project, ProjectStore, named_project
from chalicelib.settings import Settings

PAGES = (  # path, title, weight as an entry page
    ("/", "Home", 40),
    ("/pricing", "Pricing", 12),
    ("/docs", "Documentation", 10),
    ("/docs/getting-started", "Getting started", 8),
    ("/docs/api", "API reference", 5),
    ("/blog", "Blog", 6),
    ("/blog/kafka-at-the-edge", "Kafka at the edge", 9),
    ("/blog/clickhouse-rollups", "ClickHouse rollups", 7),
    ("/products/tracker", "Tracker", 6),
    ("/products/dashboard", "Dashboard", 4),
    ("/cart", "Cart", 1),
    ("/checkout", "Checkout", 1),
    ("/signup", "Sign up", 3),
    ("/about", "About", 2),
)
REFERRERS = (
    ("", 45),
    ("google.com", 25),
    ("news.ycombinator.com", 8),
    ("t.co", 6),
    ("github.com", 6),
    ("duckduckgo.com", 5),
    ("reddit.com", 5),
)
CAMPAIGNS = (("newsletter", "email", "november"), ("google", "cpc", "brand"), ("twitter", "social", "launch"))
CLIENTS = (  # browser, os, device type, weight
    ("Chrome", "Windows", "desktop", 30),
    ("Chrome", "Android", "mobile", 22),
    ("Safari", "iOS", "mobile", 18),
    ("Safari", "Mac OS X", "desktop", 10),
    ("Firefox", "Linux", "desktop", 6),
    ("Edge", "Windows", "desktop", 8),
    ("Safari", "iOS", "tablet", 6),
)
COUNTRIES = (
    ("US", 30),
    ("DE", 14),
    ("GB", 10),
    ("FR", 8),
    ("IN", 8),
    ("BR", 6),
    ("JP", 5),
    ("CA", 5),
    ("NL", 4),
    ("", 10),
)
ERRORS = (
    ("TypeError: Cannot read properties of undefined (reading 'price')", "https://shop.example/assets/cart.js", 88),
    ("ReferenceError: gtag is not defined", "https://shop.example/assets/app.js", 12),
    ("Uncaught (in promise) NetworkError", "https://shop.example/assets/api.js", 301),
)
BOT_SHARE = 0.02
DAY_MS = 86_400_000
SLICE_MS = 600_000  # traffic is made ten minutes at a time (Traffic.events)


def _daily_weight(t_ms: int) -> float:
    """How much traffic there is at ``t_ms``: most at 15:00 UTC, next to none at 03:00 (never none: a
    period of minutes there still gets its events)."""
    hour = (t_ms % DAY_MS) / 3_600_000
    return max(0.001, 0.5 + 0.5 * math.sin((hour - 9) / 24 * 2 * math.pi))


def _weighted(items: Sequence[tuple[Any, ...]]) -> tuple[list[tuple[Any, ...]], list[int]]:
    return list(items), [item[-1] for item in items]


@dataclass(frozen=True)
class Site:
    project_id: str
    weight: float
    host: str


class Traffic:
    """Seeded sessions of made-up visitors; ``events()`` yields normalised event dicts."""

    def __init__(self, sites: Sequence[Site], *, end_ms: int, days: float, seed: int = 1) -> None:
        self._sites = list(sites)
        self._site_weights = [site.weight for site in self._sites]
        self._end_ms = end_ms
        self._span_ms = int(days * DAY_MS)
        self._rng = random.Random(seed)
        self._pages = _weighted(PAGES)
        self._referrers = _weighted(REFERRERS)
        self._clients = _weighted(CLIENTS)
        self._countries = _weighted(COUNTRIES)

    def _pick(self, table: tuple[list[tuple[Any, ...]], list[int]]) -> tuple[Any, ...]:
        return self._rng.choices(table[0], weights=table[1])[0]

    def events(self, count: int) -> Iterator[dict[str, Any]]:
        """``count`` events in time order, as ingest receives them (the last session is cut).

        The period is cut into slices of :data:`SLICE_MS`; each gets its share of the events by
        :func:`_daily_weight`, in sessions starting inside it. Events of sessions still going at a
        slice's end wait in a heap for their time, so every event comes after the ones before it.
        The table's parts then hold the hours they were written in, as with real traffic: written in
        random order, every hour was in every part, and a read of one hour merged them all.
        """
        visitors = max(1, count // 12)
        start = self._end_ms - self._span_ms
        slices = max(1, math.ceil(self._span_ms / SLICE_MS))
        bounds = [start + self._span_ms * n // slices for n in range(slices + 1)]
        weights = [_daily_weight((a + b) // 2) for a, b in itertools.pairwise(bounds)]
        total = sum(weights)
        waiting: list[tuple[int, int, dict[str, Any]]] = []  # (timestamp, order made, event)
        made = 0
        share = 0.0
        for n, weight in enumerate(weights):
            share += count * weight / total
            while made < min(count, round(share)):
                first = int(bounds[n] + self._rng.random() * (bounds[n + 1] - bounds[n]))
                for event in self._session(visitors, first):
                    heapq.heappush(waiting, (event["timestamp"], made, event))
                    made += 1
                    if made == count:
                        break
            while waiting and waiting[0][0] < bounds[n + 1]:
                yield heapq.heappop(waiting)[2]
        while waiting:
            yield heapq.heappop(waiting)[2]

    def _session(self, visitors: int, first_ms: int) -> list[dict[str, Any]]:
        rng = self._rng
        site = rng.choices(self._sites, weights=self._site_weights)[0]
        visitor = int(visitors * rng.random() ** 2)  # some visitors come back often
        visitor_rng = random.Random(f"{site.project_id}/{visitor}")
        browser, os_name, device, _ = visitor_rng.choices(self._clients[0], weights=self._clients[1])[0]
        country = visitor_rng.choices(self._countries[0], weights=self._countries[1])[0][0]
        is_bot = int(rng.random() < BOT_SHARE)
        if is_bot:
            browser, os_name, device = "Googlebot", "Other", "other"
        referrer = self._pick(self._referrers)[0]
        utm = ("", "", "") if rng.random() > 0.15 else rng.choice(CAMPAIGNS)
        common = {
            "project_id": site.project_id,
            "anonymous_id": f"v{visitor:08x}-{site.project_id}",
            "session_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "user_id": "",
            "referrer": f"https://{referrer}/" if referrer else "",
            "referrer_domain": referrer,
            "screen": "1920x1080" if device == "desktop" else "390x844",
            "language": "en-US",
            "timezone": "UTC",
            "environment": "production",
            "sdk_version": "1.0.0",
            "user_agent": f"Mozilla/5.0 ({os_name}) {browser}",
            "utm_source": utm[0],
            "utm_medium": utm[1],
            "utm_campaign": utm[2],
            "utm_term": "",
            "utm_content": "",
            "browser": browser,
            "browser_version": "130.0",
            "os": os_name,
            "os_version": "",
            "device_type": device,
            "is_bot": is_bot,
            "country": country,
            "visitor_hash": visitor_rng.getrandbits(63),
        }
        t = first_ms
        page = self._pick(self._pages)
        events = []
        while True:
            events.append(self._event(common, site, "pageView", page, t, "{}"))
            for _ in range(int(rng.random() * 2.2)):
                t += rng.randint(2_000, 30_000)
                click = {
                    "tag": "A",
                    "id": "",
                    "text": rng.choice(("Pricing", "Docs", "Buy now", "Read more")),
                    "href": "/",
                }
                events.append(self._event(common, site, "click", page, t, orjson.dumps(click).decode()))
            if rng.random() < 0.03:
                message, source, line = rng.choice(ERRORS)
                stack = f"{message}\n    at render ({source}:{line}:17)"
                props = {"message": message, "source": source, "line": line, "col": 17, "stack": stack}
                events.append(self._event(common, site, "error", page, t + 500, orjson.dumps(props).decode()))
            if page[0].startswith("/products") and rng.random() < 0.2:
                events.append(self._event(common, site, "addToCart", page, t + 900, '{"sku":"TF-1","price":49}'))
            if page[0] == "/signup" and rng.random() < 0.4:
                plan = rng.choice(("free", "pro", "team"))
                events.append(
                    self._event(common, site, "signup", page, t + 1500, orjson.dumps({"plan": plan}).decode())
                )
            if rng.random() < 0.42 or len(events) > 40:
                return self._before_end(events)
            t += rng.randint(5_000, 180_000)
            page = self._pick(self._pages)

    def _before_end(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """A session that would run past the end is moved back to end there: no event is in the future."""
        overshoot = max(e["timestamp"] for e in events) - self._end_ms
        if overshoot <= 0:
            return events
        return [e | {k: e[k] - overshoot for k in ("timestamp", "client_ts", "received_at")} for e in events]

    def _event(
        self, common: dict[str, Any], site: Site, kind: str, page: tuple[Any, ...], t: int, props: str
    ) -> dict[str, Any]:
        return common | {
            "event_id": str(uuid.UUID(int=self._rng.getrandbits(128), version=4)),
            "type": kind,
            "timestamp": t,
            "client_ts": t,
            "received_at": t + 40,
            "url": f"https://{site.host}{page[0]}",
            "url_host": site.host,
            "url_path": page[0],
            "url_query": "",
            "title": page[1],
            "props": props,
        }


def sites(project_ids: Sequence[str]) -> list[Site]:
    """The first project gets most traffic, each next one half of the one before."""
    return [Site(pid, 0.5**n, f"{pid}.example") for n, pid in enumerate(project_ids)]


def batches(events: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for event in events:
        batch.append(event)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def ensure_projects(store: ProjectStore, project_ids: Sequence[str], *, stage: str) -> list[Project]:
    """Create the projects traffic is generated for that do not exist yet (the built-in
    development project exists in the dev stages); return those created."""
    created = []
    for project_id in project_ids:
        if (project_id == DEV_PROJECT_ID and stage in DEV_STAGES) or store.get(project_id) is not None:
            continue
        project = named_project(project_id)
        store.put(project)
        created.append(project)
    return created


def table_writer(settings: Settings) -> Any:
    """An EventWriter on the configured ClickHouse, migrated first."""
    from chalicelib.storage.clickhouse import EventWriter, connect
    from chalicelib.storage.migrations import migrate
    from trackflow.dev import MIGRATIONS_DIR

    database = settings.clickhouse.database
    migrate(connect(settings.clickhouse), MIGRATIONS_DIR, database=database)
    return EventWriter(connect(settings.clickhouse, database=database), database=database)


def to_table(events: Iterator[dict[str, Any]], writer: Any, *, batch_size: int, progress: Callable[[int], None]) -> int:
    """Write straight to the events table (their hours marked for rollup compaction); return how many were written."""
    from chalicelib.ingest import event_row

    written = 0
    for number, batch in enumerate(batches(events, batch_size)):
        record = KafkaRecord(topic="trackflow.load", partition=0, offset=number, timestamp=0, key=None, value=None)
        writer.insert_events([event_row(e, record) for e in batch])
        written += len(batch)
        progress(len(batch))
    return written


def to_pipeline(
    events: Iterator[dict[str, Any]], sender: Any, topic: str, *, batch_size: int, progress: Callable[[int], None]
) -> int:
    """Produce to the events topic as collect does (one message per visitor and batch)."""
    from chalicelib.kafka.producer import visitor_messages

    sent = 0
    for batch in batches(events, batch_size):
        by_project: dict[str, list[dict[str, Any]]] = {}
        for event in batch:
            by_project.setdefault(event["project_id"], []).append(event)
        for project_id, items in by_project.items():
            sender.send(topic, visitor_messages(items, project_id=project_id, schema_version=SCHEMA_VERSION))
        sent += len(batch)
        progress(len(batch))
    return sent
