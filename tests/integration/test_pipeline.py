"""End to end on real engines: collect (chalice.test.Client) -> Tansu -> trigger runner -> chDB."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from chalice.test import Client
from kafka import KafkaConsumer, KafkaProducer

import app
from chalicelib.kafka.records import build_event, encode_record
from chalicelib.settings import Settings
from tests.conftest import both_brokers, new_event, wait_for
from trackflow.runner import TriggerRunner

pytestmark = pytest.mark.integration


@pytest.fixture(params=["embedded", "apache"])
def broker(request: pytest.FixtureRequest) -> Any:
    """Every test here runs against the embedded broker and against Apache Kafka."""
    return both_brokers(request)


def _post(client: Client, body: Any, content_type: str = "text/plain") -> Any:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return client.http.post(
        "/v1/collect", headers={"Content-Type": content_type, "User-Agent": "pytest-agent"}, body=raw
    )


_opened: list[TriggerRunner] = []


@pytest.fixture(autouse=True)
def _close_runners() -> Iterator[None]:
    """Runners driven with run_once leave their groups after each test (no member lingers heartbeating)."""
    yield
    while _opened:
        _opened.pop().close()


def _runner(conf: Settings, **kwargs: Any) -> TriggerRunner:
    runner = TriggerRunner(
        app.ingest,
        bootstrap_servers=conf.bootstrap_servers,
        topic=conf.events_topic,
        group_id=f"g-{uuid.uuid4().hex[:8]}",
        batching_window_s=0.05,
        **kwargs,
    )
    _opened.append(runner)
    return runner


def _drain(runner: TriggerRunner, clickhouse: Any, expected: int, *, final: bool = True, timeout: float = 40) -> int:
    table = "events FINAL" if final else "events"

    def step() -> int:
        runner.run_once()
        count: int = clickhouse.query(f"SELECT count() FROM {table}").result_rows[0][0]
        return count if count >= expected else 0

    return int(wait_for(step, timeout=timeout, interval=0))


def test_collected_event_reaches_clickhouse_with_enriched_fields(pipeline: Settings, clickhouse: Any) -> None:
    sent_at = int(time.time() * 1000) + 3_600_000  # client clock one hour fast
    event = new_event("pageView", ts=sent_at - 1_500, props={"title": "Home", "n": 1})
    event["context"]["referrer"] = "https://www.google.com/search?q=x"
    with Client(app.app) as client:
        response = _post(client, {"api_key": "YOUR_API_KEY", "sent_at": sent_at, "events": [event]})
    assert response.status_code == 202
    assert response.json_body == {"accepted": 1, "rejected": []}

    runner = _runner(pipeline)
    _drain(runner, clickhouse, 1)
    row = clickhouse.query(
        "SELECT event_id, type, project_id, url_host, url_path, utm_source, utm_medium, referrer_domain, "
        "user_agent, props, toUnixTimestamp64Milli(timestamp), toUnixTimestamp64Milli(received_at), "
        "toUnixTimestamp64Milli(client_ts), _topic FROM events"
    ).named_results()
    (stored,) = list(row)
    assert str(stored["event_id"]) == event["event_id"]
    assert stored["type"] == "pageView"
    assert stored["project_id"] == "development"  # the seed key maps to the dev project
    assert (stored["url_host"], stored["url_path"]) == ("shop.example", "/home")
    assert (stored["utm_source"], stored["utm_medium"]) == ("news", "email")
    assert stored["referrer_domain"] == "google.com"
    assert stored["user_agent"] == "pytest-agent"
    assert orjson.loads(stored["props"]) == {"title": "Home", "n": 1}
    received = stored["toUnixTimestamp64Milli(received_at)"]
    assert stored["toUnixTimestamp64Milli(timestamp)"] == received - 1_500  # skew corrected
    assert stored["toUnixTimestamp64Milli(client_ts)"] == sent_at - 1_500
    assert stored["_topic"] == pipeline.events_topic
    assert runner.stats.batches >= 1


def test_accepts_application_json_and_the_legacy_path_and_reports_rejections(
    pipeline: Settings, clickhouse: Any
) -> None:
    good, bad = new_event("click"), new_event("click", event_id="nope")
    with Client(app.app) as client:
        response = client.http.post(
            "/collect",
            headers={"Content-Type": "application/json; charset=utf-8"},
            body=orjson.dumps({"api_key": "YOUR_API_KEY", "events": [bad, good]}),
        )
    assert response.status_code == 202
    assert response.json_body == {
        "accepted": 1,
        "rejected": [{"index": 0, "reason": "event_id is not a valid UUID (expected the 8-4-4-4-12 hex form)"}],
    }
    _drain(_runner(pipeline), clickhouse, 1)
    ids = [str(r[0]) for r in clickhouse.query("SELECT event_id FROM events").result_rows]
    assert ids == [good["event_id"]]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b"{oops", "text/plain", 400, "invalid_json"),
        (b"", "text/plain", 400, "empty_body"),
        (orjson.dumps({"api_key": "YOUR_API_KEY", "events": []}), "text/plain", 400, "empty_batch"),
        (orjson.dumps({"api_key": "YOUR_API_KEY", "events": "x"}), "application/json", 400, "bad_request"),
        (orjson.dumps({"api_key": "YOUR_API_KEY", "events": [{"type": "x"}]}), "text/plain", 400, "no_valid_events"),
        (
            orjson.dumps({"api_key": "YOUR_API_KEY", "events": [new_event()] * 101}),
            "text/plain",
            413,
            "too_many_events",
        ),
        (b"x" * 300_000, "text/plain", 413, "too_large"),
        (b"{}", "application/xml", 415, "unsupported_media_type"),
    ],
)
def test_bad_requests_get_a_json_4xx_naming_the_problem(
    pipeline: Settings, body: bytes, content_type: str, status: int, code: str
) -> None:
    with Client(app.app) as client:
        response = _post(client, body, content_type)
    assert response.status_code == status
    assert response.json_body["error"]["code"] == code
    assert response.json_body["error"]["message"]


def test_the_same_batch_delivered_twice_is_stored_and_counts_once(pipeline: Settings, clickhouse: Any) -> None:
    events = [new_event() for _ in range(5)]
    with Client(app.app) as client:
        assert _post(client, {"api_key": "YOUR_API_KEY", "events": events}).status_code == 202
    consumer = KafkaConsumer(
        pipeline.events_topic,
        bootstrap_servers=pipeline.bootstrap_servers,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    records = [next(consumer)]
    consumer.close()
    (payload,) = _runner(pipeline).payloads(records)
    with Client(app.app) as client:
        first = client.lambda_.invoke("ingest", payload)
        second = client.lambda_.invoke("ingest", payload)
    assert (
        first.payload
        == second.payload
        == {"records": 1, "inserted": 5, "duplicates": 0, "dead_lettered": 0, "erased": 0}
    )
    # Both inserts were written; FINAL (and every report) counts the events once.
    assert clickhouse.query("SELECT count() FROM events FINAL").result_rows[0][0] == 5
    # The same events inside a different batch, at other offsets, still count once.
    shifted = build_event(
        [
            encode_record(
                topic=r.topic, partition=r.partition, offset=r.offset + 100, timestamp=0, key=r.key, value=r.value
            )
            for r in records
        ],
        bootstrap_servers="x",
    )
    with Client(app.app) as client:
        client.lambda_.invoke("ingest", shifted)
    assert clickhouse.query("SELECT count() FROM events FINAL").result_rows[0][0] == 5
    assert clickhouse.query("SELECT count() FROM pageviews").result_rows[0][0] == 5
    assert clickhouse.query("SELECT uniqExact(event_id) FROM events").result_rows[0][0] == 5


def test_poison_records_go_to_the_dlq_with_their_reason_and_the_rest_is_stored(
    pipeline: Settings, clickhouse: Any
) -> None:
    with Client(app.app) as client:
        assert _post(client, {"api_key": "YOUR_API_KEY", "events": [new_event(), new_event()]}).status_code == 202
    producer = KafkaProducer(bootstrap_servers=pipeline.bootstrap_servers)
    producer.send(pipeline.events_topic, key=b"x", value=b"\x00 definitely not json", partition=0).get(10)
    producer.send(
        pipeline.events_topic, key=b"y", value=orjson.dumps({"v": 1, "events": [{"event_id": "nope"}]}), partition=1
    ).get(10)
    producer.close()
    with Client(app.app) as client:
        assert _post(client, {"api_key": "YOUR_API_KEY", "events": [new_event()]}).status_code == 202

    _drain(_runner(pipeline), clickhouse, 3)
    dead = clickhouse.query(
        "SELECT reason, source_partition, event_index FROM dead_letters ORDER BY source_partition"
    ).result_rows
    assert len(dead) == 2
    assert "value is not JSON" in dead[0][0]
    assert dead[1][0].startswith("event 0: missing field")
    assert dead[1][2] == 0

    consumer = KafkaConsumer(
        pipeline.dlq_topic,
        bootstrap_servers=pipeline.bootstrap_servers,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    letters = [next(consumer), next(consumer)]
    consumer.close()
    headers = [dict(m.headers) for m in letters]
    assert {h["source_topic"] for h in headers} == {pipeline.events_topic.encode()}
    assert all(h["reason"] and h["source_offset"] for h in headers)
    assert {m.value for m in letters} >= {b"\x00 definitely not json"}


def test_a_failed_insert_is_retried_without_commit_and_nothing_is_lost(pipeline: Settings, clickhouse: Any) -> None:
    events = [new_event() for _ in range(4)]
    with Client(app.app) as client:
        assert _post(client, {"api_key": "YOUR_API_KEY", "events": events}).status_code == 202
    clickhouse.command("DETACH TABLE events")  # a real ClickHouse failure: the table is gone
    runner = _runner(pipeline)
    wait_for(lambda: runner.run_once() == 0 and runner.stats.failures >= 2, timeout=30, interval=0)
    assert runner.stats.batches == 0  # nothing committed while failing
    clickhouse.command("ATTACH TABLE events")
    _drain(runner, clickhouse, 4)
    assert clickhouse.query("SELECT count() FROM events").result_rows[0][0] == 4
    assert runner.stats.batches == 1


def test_a_second_consumer_in_the_group_sees_only_uncommitted_records(pipeline: Settings, clickhouse: Any) -> None:
    with Client(app.app) as client:
        assert (
            _post(client, {"api_key": "YOUR_API_KEY", "events": [new_event(context={"anonymous_id": "a"})]}).status_code
            == 202
        )
    runner = _runner(pipeline)
    _drain(runner, clickhouse, 1)
    runner.stop()
    runner.run()  # closes its consumer
    with Client(app.app) as client:
        assert (
            _post(client, {"api_key": "YOUR_API_KEY", "events": [new_event(context={"anonymous_id": "b"})]}).status_code
            == 202
        )
    # A new runner in the same group resumes from the committed offsets.
    successor = TriggerRunner(
        app.ingest,
        bootstrap_servers=pipeline.bootstrap_servers,
        topic=pipeline.events_topic,
        group_id=runner._group_id,
        batching_window_s=0.05,
    )
    _drain(successor, clickhouse, 2)
    assert successor.stats.records == 1
    assert clickhouse.query("SELECT count() FROM events").result_rows[0][0] == 2


def test_keys_projects_and_origins_decide_who_may_send(pipeline: Settings, clickhouse: Any) -> None:
    from dataclasses import replace

    from chalicelib import runtime
    from chalicelib.projects import new_project

    shop = new_project("Shop", allowed_origins=["https://shop.example"])
    closed = replace(new_project("Closed"), enabled=False)
    anywhere = new_project("Anywhere")
    for project in (shop, closed, anywhere):
        runtime.projects().put(project)

    def send(key: str, origin: str | None = None) -> Any:
        headers = {"Content-Type": "text/plain"} | ({"Origin": origin} if origin else {})
        body = orjson.dumps({"api_key": key, "events": [new_event()]})
        with Client(app.app) as client:
            return client.http.post("/v1/collect", headers=headers, body=body)

    assert send(shop.api_keys[0], "https://shop.example").status_code == 202
    assert send(anywhere.api_keys[0], "https://any.example").status_code == 202
    assert send(anywhere.api_keys[0]).status_code == 202
    for key, origin, status, code in [
        ("tf_pk_unknown", None, 401, "unknown_key"),
        (closed.api_keys[0], None, 403, "project_disabled"),
        (shop.api_keys[0], "https://evil.example", 403, "origin_not_allowed"),
        (shop.api_keys[0], None, 403, "origin_not_allowed"),
    ]:
        response = send(key, origin)
        assert response.status_code == status
        assert response.json_body["error"]["code"] == code

    _drain(_runner(pipeline), clickhouse, 3)
    projects = sorted(r[0] for r in clickhouse.query("SELECT project_id FROM events").result_rows)
    assert projects == sorted([shop.project_id, anywhere.project_id, anywhere.project_id])


def test_client_facts_are_stored_but_never_the_ip_and_bots_and_gpc_follow_project_policy(
    pipeline: Settings, clickhouse: Any
) -> None:
    from dataclasses import replace

    from chalicelib import runtime
    from chalicelib.projects import new_project

    keeps_bots = replace(new_project("Keeps bots"), bot_policy="keep", honor_gpc=False)
    drops_bots = new_project("Drops bots")  # the default policy
    runtime.projects().put(keeps_bots)
    runtime.projects().put(drops_bots)
    iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
    googlebot = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
    ip = "203.0.113.77"

    def send(key: str, ua: str, **headers: str) -> Any:
        body = orjson.dumps({"api_key": key, "events": [new_event()]})
        all_headers = {"Content-Type": "text/plain", "User-Agent": ua, "X-Forwarded-For": f"{ip}, 10.0.0.1", **headers}
        with Client(app.app) as client:
            return client.http.post("/v1/collect", headers=all_headers, body=body)

    assert send(drops_bots.api_keys[0], iphone, **{"CloudFront-Viewer-Country": "nl"}).json_body["accepted"] == 1
    bot = send(drops_bots.api_keys[0], googlebot)
    assert bot.status_code == 202
    assert bot.json_body["accepted"] == 0
    assert bot.json_body["dropped"] == {"count": 1, "reason": "bot"}
    gpc = send(drops_bots.api_keys[0], iphone, **{"Sec-GPC": "1"})
    assert gpc.json_body["dropped"]["reason"] == "gpc"
    assert send(keeps_bots.api_keys[0], googlebot).json_body["accepted"] == 1
    assert send(keeps_bots.api_keys[0], iphone, **{"Sec-GPC": "1"}).json_body["accepted"] == 1

    _drain(_runner(pipeline), clickhouse, 3)
    rows = clickhouse.query(
        "SELECT project_id, browser, os, device_type, is_bot, country, visitor_hash FROM events ORDER BY project_id, is_bot"
    ).result_rows
    assert [(r[1], r[2], r[3], r[4], r[5]) for r in rows if r[0] == drops_bots.project_id] == [
        ("Mobile Safari", "iOS", "mobile", 0, "NL")
    ]
    assert sorted((r[3], r[4]) for r in rows if r[0] == keeps_bots.project_id) == [("bot", 1), ("mobile", 0)]
    assert all(r[6] > 0 for r in rows)

    # The address is nowhere in any column of any stored row (the same search finds what is there).
    def rows_containing(text: str) -> int:
        return int(
            clickhouse.query(
                "SELECT count() FROM events WHERE position(toString(tuple(*)), {t:String}) > 0", parameters={"t": text}
            ).result_rows[0][0]
        )

    assert rows_containing("Mobile Safari") == 2
    assert rows_containing(ip) == 0


def test_a_project_over_its_rate_gets_429_with_retry_after(pipeline: Settings) -> None:
    from dataclasses import replace

    from chalicelib import runtime
    from chalicelib.projects import new_project

    slow = replace(new_project("Slow"), rate_limit=1)  # burst: one full batch (100 events)
    runtime.projects().put(slow)
    body = orjson.dumps({"api_key": slow.api_keys[0], "events": [new_event() for _ in range(60)]})
    with Client(app.app) as client:
        first = client.http.post("/v1/collect", headers={"Content-Type": "text/plain"}, body=body)
        second = client.http.post("/v1/collect", headers={"Content-Type": "text/plain"}, body=body)
    assert first.status_code == 202
    assert second.status_code == 429
    assert second.json_body["error"]["code"] == "rate_limited"
    assert int(second.headers["Retry-After"]) >= 1


def test_secrets_in_urls_and_properties_reach_neither_kafka_nor_clickhouse_nor_the_dead_letters(
    pipeline: Settings, clickhouse: Any
) -> None:
    from dataclasses import replace

    from chalicelib import runtime
    from chalicelib.projects import new_project

    project = replace(new_project("Keeps q"), keep_params=("q",))
    runtime.projects().put(project)
    token = "Xk9fQ2pLmN7rT5vW8yZ1"
    page = new_event("pageView", props={"email": "ana@mail.example", "plan": "pro"})
    page["context"] = {
        "url": f"https://shop.example/reset?token={token}&q=hats&utm_source=mail&gclid=Cj0KCQ#access_token={token}",
        "referrer": f"https://mail.example/open?session={token}&ref=digest",
        "anonymous_id": "anon-1",
    }
    click = new_event("click", props={"tag": "a", "href": f"/verify?code={token}&utm_medium=email"})
    click["context"] = page["context"]
    with Client(app.app) as client:
        response = _post(client, {"api_key": project.api_keys[0], "events": [page, click]})
    assert response.json_body == {"accepted": 2, "rejected": []}

    consumer = KafkaConsumer(
        pipeline.events_topic,
        bootstrap_servers=pipeline.bootstrap_servers,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    values = [m.value for m in consumer]
    consumer.close()
    assert values and not any(token.encode() in v or b"ana@mail.example" in v for v in values)

    # A message that ends in the dead-letter table is stored as Kafka holds it: cleaned.
    producer = KafkaProducer(bootstrap_servers=pipeline.bootstrap_servers)
    poisoned = orjson.loads(values[0]) | {"v": 99}
    producer.send(pipeline.events_topic, key=b"p", value=orjson.dumps(poisoned), partition=0).get(10)
    producer.close()
    _drain(_runner(pipeline), clickhouse, 2)
    stored = clickhouse.query(
        "SELECT type, url, url_query, referrer, props FROM events FINAL WHERE project_id = {p:String} ORDER BY type",
        parameters={"p": project.project_id},
    ).result_rows
    cleaned = (
        "https://shop.example/reset?q=hats&utm_source=mail&gclid",
        "q=hats&utm_source=mail&gclid",
        "https://mail.example/open?ref=digest",
    )
    assert [row[:4] for row in stored] == [("click", *cleaned), ("pageView", *cleaned)]
    assert orjson.loads(stored[0][4])["href"] == "/verify?utm_medium=email"
    assert orjson.loads(stored[1][4]) == {"email": "redacted", "plan": "pro"}
    dead = clickhouse.query("SELECT value FROM dead_letters").result_rows
    assert len(dead) == 1
    assert token not in dead[0][0] and "utm_source=mail" in dead[0][0]
