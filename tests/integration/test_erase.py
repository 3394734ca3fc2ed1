"""Erasure end to end: collect -> Kafka -> ingest -> chDB, then DELETE /v1/projects/{id}/people.

The people, all in one project on one day:
- u-42: browsed anonymously as browser ``anon-a`` (3 page views), then signed
  in there (2 page views with user id u-42), and used a second browser
  ``anon-b`` signed in (1 page view); one of her records also sits in the
  dead letters;
- u-7: signed in later on the same browser ``anon-a`` (2 page views): hers stay;
- ``anon-c``: never signed in (4 page views).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import orjson
import pytest
from chalice.test import Client
from kafka import KafkaConsumer, KafkaProducer

import app
from chalicelib import runtime
from chalicelib.projects import new_project
from chalicelib.rollups.compaction import compact_all
from chalicelib.settings import Settings
from chalicelib.stats import reports as stats
from chalicelib.stats.params import parse_query
from tests.conftest import wait_for
from trackflow.runner import TriggerRunner

pytestmark = pytest.mark.integration

ERASED_SUBSTRINGS = ("u-42",)


def _send(client: Client, key: str, browser: str, user: str, pages: int, at_ms: int) -> None:
    context = {"anonymous_id": browser, "session_id": f"s-{browser}-{user or 'anon'}", "user_id": user}
    events = [
        {
            "event_id": str(uuid.uuid4()),
            "type": "pageView",
            "ts": at_ms + n * 1000,
            "props": {},
            "context": context | {"url": f"https://shop.example/p{n}"},
        }
        for n in range(pages)
    ]
    response = client.http.post(
        "/v1/collect",
        headers={"Content-Type": "text/plain", "User-Agent": "pytest"},
        body=orjson.dumps({"api_key": key, "events": events}),
    )
    assert response.json_body["accepted"] == pages, response.body


def _ingest_all(conf: Settings, clickhouse: Any, expected: int) -> TriggerRunner:
    """A new consumer group reads the topic from its start (as a redelivery would) until ``expected`` rows."""
    runner = TriggerRunner(
        app.ingest,
        bootstrap_servers=conf.bootstrap_servers,
        topic=conf.events_topic,
        group_id=f"g-{uuid.uuid4().hex[:8]}",
        batching_window_s=0.05,
    )

    def step() -> bool:
        runner.run_once()
        return bool(clickhouse.query("SELECT count() FROM events").result_rows[0][0] >= expected)

    wait_for(step, timeout=40, interval=0)
    return runner


def _people(clickhouse: Any, project: str) -> dict[tuple[str, str], int]:
    rows = clickhouse.query(
        "SELECT anonymous_id, user_id, count() FROM events FINAL WHERE project_id = {p:String} GROUP BY ALL",
        parameters={"p": project},
    ).result_rows
    return {(r[0], r[1]): r[2] for r in rows}


def _holding(clickhouse: Any, database: str, text: str) -> dict[str, int]:
    """Rows of every table of the database with ``text`` anywhere in them."""
    tables = clickhouse.query(
        "SELECT name FROM system.tables WHERE database = {d:String} AND engine NOT LIKE '%View%'",
        parameters={"d": database},
    ).result_rows
    found = {}
    for (table,) in tables:
        rows = clickhouse.query(
            f"SELECT count() FROM {table} WHERE position(toString(tuple(*)), {{t:String}}) > 0", parameters={"t": text}
        ).result_rows[0][0]
        if rows:
            found[table] = rows
    return found


def _reports(clickhouse: Any, project: str, *, rollups: bool) -> list[Any]:
    query = parse_query({"project": project, "period": "24h"}, now=_now())  # not "today": the events are up to 2 h old
    return [
        stats.overview(clickhouse, query, rollups=rollups)["metrics"],
        stats.timeseries(clickhouse, query, rollups=rollups)["points"],
        *(stats.breakdown(clickhouse, query, d, rollups=rollups)["rows"] for d in ("pages", "entry_pages")),
    ]


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


@pytest.fixture
def shop(pipeline: Settings, clickhouse: Any) -> Iterator[Any]:
    project = replace(new_project("Shop"), bot_policy="keep")
    runtime.projects().put(project)
    # Ten minutes into the last hour: all of it in one hour, so the erasure rebuilds the hour u-7's events
    # are in too (they shared her browser). Events 30 minutes old straddled an hour one run in sixty.
    at = (int(time.time()) // 3600 - 1) * 3_600_000 + 10 * 60_000
    with Client(app.app) as client:
        _send(client, project.api_keys[0], "anon-a", "", 3, at)
        _send(client, project.api_keys[0], "anon-a", "u-42", 2, at + 60_000)
        _send(client, project.api_keys[0], "anon-b", "u-42", 1, at + 120_000)
        _send(client, project.api_keys[0], "anon-a", "u-7", 2, at + 180_000)
        _send(client, project.api_keys[0], "anon-c", "", 4, at + 240_000)
    # Dead letters: a message of u-42 and one of u-7 that ingest cannot read (schema 99), stored whole,
    # and an event of u-42 it refuses (a bad event id), stored as that one event.
    consumer = KafkaConsumer(
        pipeline.events_topic,
        bootstrap_servers=pipeline.bootstrap_servers,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    messages = [orjson.loads(m.value) for m in consumer]
    consumer.close()
    hers = next(m for m in messages if m["shared"].get("user_id") == "u-42")
    u7 = next(m for m in messages if m["shared"].get("user_id") == "u-7")
    bad_event = hers | {"events": [hers["events"][0] | {"event_id": "nope"}]}
    producer = KafkaProducer(bootstrap_servers=pipeline.bootstrap_servers)
    for value in (hers | {"v": 99}, u7 | {"v": 99}, bad_event):
        producer.send(pipeline.events_topic, key=b"x", value=orjson.dumps(value)).get(10)
    producer.close()
    _ingest_all(pipeline, clickhouse, 12).close()
    compact_all(clickhouse, settle_s=0)
    assert clickhouse.query("SELECT count() FROM dead_letters").result_rows[0][0] == 3
    yield project


def _erase(client: Client, project_id: str, query: str, token: str) -> Any:
    return client.http.delete(f"/v1/projects/{project_id}/people?{query}", headers={"Authorization": f"Bearer {token}"})


def test_an_erased_person_is_in_no_table_and_no_report_and_others_are_untouched(
    pipeline: Settings, clickhouse: Any, shop: Any
) -> None:
    held = _holding(clickhouse, pipeline.clickhouse.database, "u-42")
    assert {"events", "dead_letters", "rollup_session_hours", "rollup_session_days"} <= set(held), held
    before = _people(clickhouse, shop.project_id)
    assert before == {
        ("anon-a", ""): 3,
        ("anon-a", "u-42"): 2,
        ("anon-b", "u-42"): 1,
        ("anon-a", "u-7"): 2,
        ("anon-c", ""): 4,
    }
    with Client(app.app) as client:
        response = _erase(client, shop.project_id, "user_id=u-42", shop.admin_token)
    assert response.status_code == 200, response.body
    receipt = response.json_body
    assert (receipt["events"], receipt["dead_letters"], receipt["linked_ids"]) == (6, 2, 3)
    assert receipt["kind"] == "user_id" and "u-42" not in orjson.dumps(receipt).decode()
    assert "retention" in receipt["still_in_kafka"]

    after = _people(clickhouse, shop.project_id)
    assert after == {("anon-a", "u-7"): 2, ("anon-c", ""): 4}  # u-7 signed in on anon-a: hers stay
    assert _holding(clickhouse, pipeline.clickhouse.database, "u-42") == {}
    assert _holding(clickhouse, pipeline.clickhouse.database, "u-7") == {"events": 2, "dead_letters": 1}
    audit = clickhouse.query("SELECT actor, person_hash, events FROM erasures").result_rows
    assert audit == [(f"api: admin token of {shop.project_id}", receipt["person_hash"], 6)]

    # Until compaction rebuilds them the hours read raw; after it, the rollups: both without her.
    raw = _reports(clickhouse, shop.project_id, rollups=False)
    assert _reports(clickhouse, shop.project_id, rollups=True) == raw
    assert raw[0]["pageviews"]["value"] == 6 and raw[0]["visitors"]["value"] == 2
    done = compact_all(clickhouse, settle_s=0)
    assert done.hours >= 1
    assert _reports(clickhouse, shop.project_id, rollups=True) == raw
    sessions = clickhouse.query(
        "SELECT count() FROM rollup_session_hours FINAL WHERE visitor_id IN ('anon-b') OR session_id LIKE '%u-42%'"
    ).result_rows[0][0]
    assert sessions == 0

    # Her records redelivered from Kafka (a new consumer group reads the topic again, the unreadable one
    # too): nothing of hers is stored, not even in the dead letters.
    results: list[dict[str, int]] = []
    runner = TriggerRunner(
        lambda payload, context: results.append(app.ingest(payload, context)),
        bootstrap_servers=pipeline.bootstrap_servers,
        topic=pipeline.events_topic,
        group_id=f"g-{uuid.uuid4().hex[:8]}",
        batching_window_s=0.05,
    )
    wait_for(lambda: runner.run_once() >= 0 and sum(r["records"] for r in results) >= 8, timeout=40, interval=0)
    runner.close()
    assert sum(r["erased"] for r in results) == 6 + 2  # her six events, her unreadable record, her bad event
    assert sum(r["inserted"] for r in results) == 6  # everyone else's, again (deduplicated by FINAL)
    assert _people(clickhouse, shop.project_id) == after
    assert _holding(clickhouse, pipeline.clickhouse.database, "u-42") == {}

    # A second call is harmless: it finds nothing.
    with Client(app.app) as client:
        again = _erase(client, shop.project_id, "user_id=u-42", shop.admin_token)
        # The erasure answer's CORS headers stay its own: collect still refuses a foreign origin unreadably.
        strict = new_project("Strict", allowed_origins=["https://shop.example"])
        runtime.projects().put(strict)
        refused = client.http.post(
            "/v1/collect",
            headers={"Content-Type": "text/plain", "Origin": "https://elsewhere.example"},
            body=orjson.dumps(
                {
                    "api_key": strict.api_keys[0],
                    "events": [{"event_id": str(uuid.uuid4()), "type": "x", "ts": int(time.time() * 1000)}],
                }
            ),
        )
    assert again.status_code == 200 and again.json_body["events"] == 0
    assert refused.status_code == 403
    assert not {name.lower() for name in refused.headers} & {
        "access-control-allow-origin",
        "access-control-allow-headers",
    }
    assert _people(clickhouse, shop.project_id) == after


def test_erasing_a_browser_takes_all_its_events(pipeline: Settings, clickhouse: Any, shop: Any) -> None:
    with Client(app.app) as client:
        response = _erase(client, shop.project_id, "anonymous_id=anon-c", shop.admin_token)
    assert response.json_body["events"] == 4
    assert ("anon-c", "") not in _people(clickhouse, shop.project_id)
    assert sum(_people(clickhouse, shop.project_id).values()) == 8


def test_only_the_projects_admin_token_may_erase_and_bad_ids_are_400(
    pipeline: Settings, clickhouse: Any, shop: Any
) -> None:
    other = new_project("Other")
    runtime.projects().put(other)
    cases = [
        ("user_id=u-42", shop.read_token, 403, "admin_token_required"),
        ("user_id=u-42", other.admin_token, 403, "wrong_project"),
        ("user_id=u-42", other.read_token, 403, "wrong_project"),
        ("user_id=u-42", "tf_at_nope", 401, "bad_token"),
        ("user_id=" + "x" * 10_000, shop.admin_token, 400, None),
        ("user_id=u-42&anonymous_id=anon-a", shop.admin_token, 400, "person_required"),
        ("", shop.admin_token, 400, "person_required"),
        ("email=a@b.example", shop.admin_token, 400, None),
    ]
    with Client(app.app) as client:
        for query, token, status, code in cases:
            response = _erase(client, shop.project_id, query, token)
            assert response.status_code == status, (query[:60], response.body[:300])
            error = orjson.loads(response.body)["error"]
            assert error["message"]
            if code:
                assert error["code"] == code, error
        missing = _erase(client, "no-such-project", "user_id=u-42", shop.admin_token)
        assert missing.status_code == 404
    assert sum(_people(clickhouse, shop.project_id).values()) == 12  # nothing was deleted
