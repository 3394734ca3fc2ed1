"""Every stats report for a period, next to what `events FINAL` and the sender say it must be.

:func:`visits` makes the traffic (so the expected numbers are known),
:func:`gather` asks every endpoint through the app (and the rollup-capable
ones again forced onto raw events), :func:`check` compares. ``gather`` returns
plain JSON, so a child process holding another chDB directory can print it.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from chalice.test import Client

PATHS = ("/", "/pricing", "/docs", "/signup")


def visits(client: Client, visitors: int, *, key: str = "YOUR_API_KEY") -> list[Counter[str]]:
    """One collect request per visitor: 4 page views, a click, an error and a signup, a minute ago.

    Each request becomes one Kafka record (the key is the visitor). Returns each one's expected counts:
    add those of the records delivered.
    """
    sent = []
    now = int(time.time() * 1000) - 60_000
    for number in range(visitors):
        visitor, session = f"visitor-{number}-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
        context = {"anonymous_id": visitor, "session_id": session}
        events = [{"type": "pageView", "url": path, "props": {"title": path}} for path in PATHS] + [
            {"type": "click", "url": "/pricing", "props": {"tag": "BUTTON", "id": "buy", "text": "Buy"}},
            {"type": "error", "url": "/docs", "props": {"message": "boom", "source": "app.js"}},
            {"type": "signup", "url": "/signup", "props": {"plan": "pro"}},
        ]
        body = {
            "api_key": key,
            "events": [
                {
                    "event_id": str(uuid.uuid4()),
                    "type": e["type"],
                    "ts": now + n * 1000,
                    "props": e["props"],
                    "context": context | {"url": f"https://shop.example{e['url']}"},
                }
                for n, e in enumerate(events)
            ],
        }
        response = client.http.post(
            "/v1/collect", headers={"Content-Type": "text/plain", "User-Agent": "pytest"}, body=orjson.dumps(body)
        )
        assert response.status_code == 202, response.body
        sent.append(Counter(visitors=1, sessions=1, pageviews=len(PATHS), click=1, error=1, signup=1))
    return sent


def _days() -> str:
    today = datetime.now(UTC).date()
    return f"from={today - timedelta(days=1)}&to={today}"


ROLLUP_REPORTS = (
    "overview?{days}",
    "timeseries?{days}&interval=hour",
    "timeseries?{days}&interval=day",
    *(
        f"breakdown/{d}?{{days}}"
        for d in ("pages", "entry_pages", "exit_pages", "referrers", "utm_sources", "browsers", "devices", "countries")
    ),
    # A half-hour zone: its days start at hh:30 UTC, so the hours at the ends are read raw.
    *(
        f"{report}&tz=Asia/Kolkata"
        for report in ("overview?{days}", "timeseries?{days}&interval=hour", "timeseries?{days}&interval=day")
    ),
    "breakdown/pages?{days}&tz=Asia/Kolkata",
    "breakdown/entry_pages?{days}&tz=Asia/Kolkata",
    # The dashboard's tables in one request.
    "breakdowns?{days}&dimensions=entry_pages,exit_pages,referrers,utm_sources,devices,browsers,os,countries",
)
RAW_REPORTS = ("events?{days}", "clicks?{days}", "errors?{days}", "realtime")


def gather(client: Client, reader: Any, project: str = "development") -> dict[str, Any]:
    """Every report through the app, the rollup-capable ones also on raw events, and `events FINAL` counts."""
    from chalicelib.stats import reports as stats
    from chalicelib.stats.params import parse_query

    days = _days()
    answers = {}
    for template in ROLLUP_REPORTS + RAW_REPORTS:
        path = template.format(days=days)
        response = client.http.get(f"/v1/stats/{path}")
        assert response.status_code == 200, (path, response.body)
        answers[path] = response.json_body
    raw = {}
    for template in ROLLUP_REPORTS:
        path = template.format(days=days)
        name, _, query_string = path.partition("?")
        params = dict(part.split("=", 1) for part in query_string.split("&"))
        dimensions = params.pop("dimensions", "").split(",")
        query = parse_query(params, now=datetime.now(UTC), default_project=project)
        if name == "overview":
            raw[path] = stats.overview(reader, query, rollups=False)
        elif name == "timeseries":
            raw[path] = stats.timeseries(reader, query, rollups=False)
        elif name == "breakdowns":
            raw[path] = stats.breakdowns(reader, query, dimensions, rollups=False)
        else:
            raw[path] = stats.breakdown(reader, query, name.split("/")[1], rollups=False)
    final = dict(
        reader.query(
            "SELECT type, count() FROM events FINAL WHERE project_id = {p:String} GROUP BY type",
            parameters={"p": project},
        ).result_rows
    )
    from chalicelib.rollups.compaction import backlog

    clean = backlog(reader).clean_hours
    return orjson.loads(
        orjson.dumps({"answers": answers, "raw": raw, "final": final, "clean_hours": clean}, default=str)
    )


def check(found: dict[str, Any], expected: Counter[str]) -> None:
    """Each event counted once in every report: the counts sent, equal to `events FINAL` and to raw events."""
    assert found["final"] == {
        "pageView": expected["pageviews"],
        "click": expected["click"],
        "error": expected["error"],
        "signup": expected["signup"],
    }
    answers, days = found["answers"], _days()
    metrics = answers[f"overview?{days}"]["metrics"]
    assert (metrics["visitors"]["value"], metrics["sessions"]["value"], metrics["pageviews"]["value"]) == (
        expected["visitors"],
        expected["sessions"],
        expected["pageviews"],
    )
    for interval in ("hour", "day"):
        points = answers[f"timeseries?{days}&interval={interval}"]["points"]
        assert sum(p["pageviews"] for p in points) == expected["pageviews"], interval
        assert sum(p["events"] for p in points) == sum(found["final"].values()), interval
    pages = answers[f"breakdown/pages?{days}"]["rows"]
    assert sorted((r["value"], r["pageviews"]) for r in pages) == sorted((path, expected["visitors"]) for path in PATHS)
    assert sum(r["sessions"] for r in answers[f"breakdown/entry_pages?{days}"]["rows"]) == expected["sessions"]
    for path, raw in found["raw"].items():
        assert answers[path] == raw, f"{path}: the rollups and raw events disagree"
    assert [(r["name"], r["count"]) for r in answers[f"events?{days}"]["rows"]] == [("signup", expected["signup"])]
    assert sum(r["count"] for r in answers[f"clicks?{days}"]["rows"]) == expected["click"]
    assert sum(r["count"] for r in answers[f"errors?{days}"]["rows"]) == expected["error"]
    realtime = answers["realtime"]
    assert (realtime["pageviews"], realtime["visitors"]) == (expected["pageviews"], expected["visitors"])
