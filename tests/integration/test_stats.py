"""The stats API against known events written through the ingest handler into chDB.

The data: three real sessions of two visitors on 2026-11-20 (one of them
delivered twice), a bot, one session the day before, and one page view a
minute ago for the realtime panel. Every expected number is worked out by hand
in the comments.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from chalice.test import Client

import app
from chalicelib import runtime
from chalicelib.ingest import event_row, ingest
from chalicelib.kafka.records import build_event, encode_record
from chalicelib.projects import new_project
from chalicelib.rollups.compaction import compact_all
from chalicelib.settings import Settings, load_settings
from chalicelib.stats import reports as stats
from chalicelib.stats.params import parse_query
from chalicelib.stats.sql import DIMENSIONS
from chalicelib.storage.clickhouse import connect
from chalicelib.storage.migrations import migrate
from tests.conftest import make_env
from trackflow.broker import EmbeddedBroker
from trackflow.dev import MIGRATIONS_DIR
from trackflow.topics import ensure_topics

pytestmark = pytest.mark.integration

DAY = "from=2026-11-20&to=2026-11-20"


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def normalised(kind: str, at_ms: int, path: str, *, visitor: str, session: str, **fields: Any) -> dict[str, Any]:
    """A normalised event as collect produces it, with empty defaults."""
    event: dict[str, Any] = {
        name: "" for name in ("user_id", "url_query", "referrer", "referrer_domain", "title", "screen", "language")
    }
    event |= {name: "" for name in ("timezone", "environment", "sdk_version", "user_agent", "utm_term", "utm_content")}
    event |= {name: "" for name in ("utm_source", "utm_medium", "utm_campaign", "browser", "browser_version", "os")}
    event |= {
        "project_id": "development",
        "event_id": str(uuid.uuid4()),
        "type": kind,
        "timestamp": at_ms,
        "client_ts": at_ms,
        "received_at": at_ms,
        "url": f"https://shop.example{path}",
        "url_host": "shop.example",
        "url_path": path,
        "anonymous_id": visitor,
        "session_id": session,
        "props": "{}",
        "os_version": "",
        "device_type": "desktop",
        "is_bot": 0,
        "country": "",
        "visitor_hash": 1,
    }
    return event | fields


def _payload(*batches: list[dict[str, Any]], first_offset: int) -> dict[str, Any]:
    records = [
        encode_record(
            topic="events",
            partition=0,
            offset=first_offset + n,
            timestamp=0,
            key=b"k",
            value=orjson.dumps({"v": 1, "events": events}),
        )
        for n, events in enumerate(batches)
    ]
    return build_event(records, bootstrap_servers="local")


@pytest.fixture(scope="module")
def known_data(broker: EmbeddedBroker, data_dir: Path) -> Iterator[Settings]:
    """The events below, stored and compacted once for the module (its tests only read them)."""
    pipeline = load_settings(make_env(broker, data_dir))
    ensure_topics(pipeline.bootstrap_servers, {pipeline.events_topic: 2, pipeline.dlq_topic: 1})
    migrate(connect(pipeline.clickhouse), MIGRATIONS_DIR, database=pipeline.clickhouse.database)
    runtime.reset()
    runtime.configure(settings=pipeline)
    a = {"visitor": "A", "country": "DE", "browser": "Firefox", "device_type": "desktop"}
    b = {"visitor": "B", "country": "US", "browser": "Chrome", "device_type": "mobile"}
    s1 = [  # 100 s, 2 page views, from google with a campaign
        normalised(
            "pageView",
            _ms("2026-11-20 10:00:00"),
            "/",
            session="s1",
            referrer_domain="google.com",
            utm_source="newsletter",
            **a,
        ),
        normalised(
            "click",
            _ms("2026-11-20 10:01:00"),
            "/",
            session="s1",
            referrer_domain="google.com",
            utm_source="newsletter",
            props='{"tag":"BUTTON","id":"buy","text":"Buy","href":""}',
            **a,
        ),
        normalised(
            "pageView",
            _ms("2026-11-20 10:01:40"),
            "/pricing",
            session="s1",
            referrer_domain="google.com",
            utm_source="newsletter",
            **a,
        ),
    ]
    error = normalised(
        "error",
        _ms("2026-11-20 14:00:05"),
        "/pricing",
        session="s2",
        props='{"message":"boom","source":"app.js","stack":"boom at app.js:1"}',
        **a,
    )
    s2 = [
        normalised("pageView", _ms("2026-11-20 14:00:00"), "/pricing", session="s2", **a),
        error,
        error,
    ]  # 5 s, a bounce; the error sent twice
    s3 = [  # 20 s, a bounce with a signup
        normalised("pageView", _ms("2026-11-20 10:30:00"), "/docs", session="s3", **b),
        normalised("signup", _ms("2026-11-20 10:30:20"), "/docs", session="s3", props='{"plan":"pro"}', **b),
    ]
    bot = [normalised("pageView", _ms("2026-11-20 11:00:00"), "/", session="s4", visitor="C", is_bot=1)]
    before = [normalised("pageView", _ms("2026-11-19 09:00:00"), "/", session="s0", visitor="B")]
    live = [normalised("pageView", int(time.time() * 1000) - 60_000, "/live", session="s5", visitor="D")]
    resent = [s3[0] | {"resent": 1}]  # the tracker never heard back about s3's page view and sent it again
    handler = {
        "writer": runtime.writer(),
        "dlq": runtime.sender(),
        "dlq_topic": pipeline.dlq_topic,
        "now_ms": runtime.now_ms,
    }
    first = _payload(s1, s3, first_offset=0)
    assert ingest(first, **handler)["inserted"] == 5
    assert ingest(first, **handler)["inserted"] == 5  # redelivered: stored again, counted once (FINAL)
    # s2's error twice in one batch is written once; the resent page view of s3 is a row again.
    assert ingest(_payload(s2, bot, before, live, resent, first_offset=2), **handler)["duplicates"] == 1
    done = compact_all(runtime.rollup_client(), settle_s=0)
    # Hours: 09 on the 19th; 10, 11 and 14 on the 20th; the live one. Days: the 19th, the 20th, today.
    assert (done.hours, done.days) == (5, 3)
    runtime.sender().close()
    runtime.reset()
    yield pipeline


@pytest.fixture
def known(known_data: Settings) -> Iterator[dict[str, Any]]:
    """The app's runtime on the module's data, for one test."""
    runtime.reset()
    runtime.configure(settings=known_data)
    yield {"client": runtime.reader()}
    runtime.sender().close()
    runtime.reset()


def get(path: str, headers: dict[str, str] | None = None) -> Any:
    """A stats request; without a ``bots`` parameter it counts people only (the development
    project's own default includes bots, see the test of that)."""
    if "bots=" not in path:
        path += ("&" if "?" in path else "?") + "bots=exclude"
    with Client(app.app) as client:
        return client.http.get(path, headers=headers or {})


def test_overview_counts_sessions_bounces_and_durations_with_the_day_before(known: dict[str, Any]) -> None:
    response = get(f"/v1/stats/overview?{DAY}")
    assert response.status_code == 200, response.body
    assert response.json_body["metrics"] == {
        "visitors": {"value": 2, "previous": 1},
        "sessions": {"value": 3, "previous": 1},
        "pageviews": {"value": 4, "previous": 1},
        "bounce_rate": {"value": 66.7, "previous": 100.0},  # s2 and s3 of 3
        "avg_session_s": {"value": 41.7, "previous": 0.0},  # (100 + 5 + 20) / 3
    }


def test_bots_count_when_asked_for_and_by_default_in_the_development_project(known: dict[str, Any]) -> None:
    with Client(app.app) as client:  # no bots parameter at all
        unsaid = client.http.get(f"/v1/stats/overview?{DAY}").json_body
    for body in (get(f"/v1/stats/overview?{DAY}&bots=include").json_body, unsaid):
        metrics = body["metrics"]
        assert (metrics["visitors"]["value"], metrics["sessions"]["value"], metrics["pageviews"]["value"]) == (3, 4, 5)
        assert body["period"]["bots"] == "include"  # the answer says what it counted
    body = get(f"/v1/stats/overview?{DAY}&bots=exclude").json_body
    assert (body["metrics"]["visitors"]["value"], body["period"]["bots"]) == (2, "exclude")


def test_timeseries_has_every_hour_and_the_events_in_theirs(known: dict[str, Any]) -> None:
    body = get(f"/v1/stats/timeseries?{DAY}&interval=hour").json_body
    points = {p["time"][11:16]: p for p in body["points"]}
    assert len(body["points"]) == 24
    assert points["10:00"] == {"time": "2026-11-20T10:00:00+00:00", "pageviews": 3, "events": 5, "visitors": 2}
    assert points["14:00"] | {"time": ""} == {"time": "", "pageviews": 1, "events": 2, "visitors": 1}
    assert sum(p["pageviews"] for p in body["points"]) == 4


def test_timeseries_days_follow_the_time_zone(known: dict[str, Any]) -> None:
    body = get("/v1/stats/timeseries?from=2026-11-19&to=2026-11-20&tz=Asia/Tokyo&interval=day").json_body
    # 10:00 and 14:00 UTC on the 20th are 19:00 and 23:00 in Tokyo: still the 20th there.
    assert [(p["time"], p["pageviews"]) for p in body["points"]] == [
        ("2026-11-19T00:00:00+09:00", 1),
        ("2026-11-20T00:00:00+09:00", 4),
    ]


@pytest.mark.parametrize(
    ("dimension", "rows"),
    [
        ("pages", [("/pricing", 1, 2), ("/", 1, 1), ("/docs", 1, 1)]),
        ("entry_pages", [("/", 1, 2), ("/docs", 1, 1), ("/pricing", 1, 1)]),
        ("exit_pages", [("/pricing", 1, 3), ("/docs", 1, 1)]),
        ("referrers", [("", 2, 2), ("google.com", 1, 2)]),
        ("utm_sources", [("", 2, 2), ("newsletter", 1, 2)]),
        ("countries", [("DE", 1, 3), ("US", 1, 1)]),
        ("browsers", [("Firefox", 1, 3), ("Chrome", 1, 1)]),
        ("devices", [("desktop", 1, 3), ("mobile", 1, 1)]),
    ],
)
def test_breakdowns_rank_values_by_visitors_and_page_views(
    known: dict[str, Any], dimension: str, rows: list[tuple[str, int, int]]
) -> None:
    body = get(f"/v1/stats/breakdown/{dimension}?{DAY}").json_body
    assert [(r["value"], r["visitors"], r["pageviews"]) for r in body["rows"]] == rows


def test_breakdowns_answers_each_dimension_asked_as_its_own_endpoint_does_in_the_order_asked(
    known: dict[str, Any],
) -> None:
    asked = ["countries", "pages", "entry_pages", "exit_pages", "referrers", "utm_sources", "browsers", "devices"]
    body = get(f"/v1/stats/breakdowns?{DAY}&limit=1&dimensions={','.join(asked)},pages").json_body
    assert [b["dimension"] for b in body["breakdowns"]] == asked  # pages asked twice: answered once
    for found in body["breakdowns"]:
        alone = get(f"/v1/stats/breakdown/{found['dimension']}?{DAY}&limit=1").json_body
        assert found["rows"] == alone["rows"] and len(alone["rows"]) == 1, found["dimension"]
        assert body["period"] == alone["period"]
    # Filtered (raw events), in a half-hour zone, bots counted: still each as its own endpoint gives it.
    for extra in ("&country=DE", "&tz=Asia/Kolkata", "&bots=include&browser=Firefox"):
        found = get(f"/v1/stats/breakdowns?{DAY}{extra}&dimensions={','.join(asked)}").json_body["breakdowns"]
        for one in found:
            assert one["rows"] == get(f"/v1/stats/breakdown/{one['dimension']}?{DAY}{extra}").json_body["rows"], extra
    every = get(f"/v1/stats/breakdowns?{DAY}").json_body["breakdowns"]
    assert [b["dimension"] for b in every] == list(DIMENSIONS)  # none named: every one
    assert (
        every[list(DIMENSIONS).index("countries")]["rows"]
        == get(f"/v1/stats/breakdown/countries?{DAY}").json_body["rows"]
    )


@pytest.mark.parametrize("dimensions", ["shoe_sizes", "pages,,countries", "", "pages,%20countries"])
def test_breakdowns_with_a_name_that_is_not_a_breakdown_is_a_400_naming_the_parameter(
    known: dict[str, Any], dimensions: str
) -> None:
    response = get(f"/v1/stats/breakdowns?dimensions={dimensions}")
    assert (response.status_code, response.json_body["error"]["field"]) == (400, "dimensions"), response.body
    assert "one of pages, entry_pages" in response.json_body["error"]["message"]


def test_errors_are_grouped_with_sessions_first_last_seen_and_a_stack(known: dict[str, Any]) -> None:
    rows = get(f"/v1/stats/errors?{DAY}").json_body["rows"]
    assert rows == [
        {
            "message": "boom",
            "source": "app.js",
            "count": 1,  # sent twice in one batch, stored once
            "sessions": 1,
            "first_seen": _ms("2026-11-20 14:00:05"),
            "last_seen": _ms("2026-11-20 14:00:05"),
            "sample_stack": "boom at app.js:1",
        }
    ]


def test_errors_of_one_message_and_source_are_one_row_whatever_their_stacks_with_the_latest_stack(
    known: dict[str, Any],
) -> None:
    """Errors are counted per ``props`` before they are grouped by message and source: the counts, sessions
    and times are of every error of the group, the stack is the latest error's."""
    boom = '{"message":"boom","source":"app.js","stack":"%s"}'
    sent = [
        ("09:00:00", "e1", boom % "at a"),
        ("09:40:00", "e1", boom % "at a"),  # the same error again in the same session: the latest
        ("09:30:00", "e2", boom % "at b"),  # another stack, seen first after a's first
        ("09:20:00", "e3", boom % "at c"),
        ("08:00:00", "e3", '{"message":"bang","source":"lib.js","stack":"at d"}'),
    ]
    events = [
        normalised("error", _ms(f"2026-11-20 {at}"), "/", session=session, visitor="E", props=props, project_id="errs")
        for at, session, props in sent
    ]
    from tests.integration.test_rollups import RECORD

    runtime.writer().insert_events([event_row(e, RECORD) for e in events])
    query = parse_query(
        {"from": "2026-11-20", "to": "2026-11-20", "project": "errs"},
        now=datetime(2026, 11, 27, tzinfo=UTC),
        default_project="development",
    )
    rows = stats.errors(known["client"], query)["rows"]
    assert rows == [
        {
            "message": "boom",
            "source": "app.js",
            "count": 4,
            "sessions": 3,
            "first_seen": _ms("2026-11-20 09:00:00"),
            "last_seen": _ms("2026-11-20 09:40:00"),
            "sample_stack": "at a",
        },
        {
            "message": "bang",
            "source": "lib.js",
            "count": 1,
            "sessions": 1,
            "first_seen": _ms("2026-11-20 08:00:00"),
            "last_seen": _ms("2026-11-20 08:00:00"),
            "sample_stack": "at d",
        },
    ]


def test_custom_events_and_their_property_values(known: dict[str, Any]) -> None:
    names = get(f"/v1/stats/events?{DAY}").json_body["rows"]
    assert names == [{"name": "signup", "count": 1, "visitors": 1}]
    values = get(f"/v1/stats/events?{DAY}&name=signup&property=plan").json_body["rows"]
    assert values == [{"value": "pro", "count": 1, "visitors": 1}]


def test_clicks_are_grouped_by_element(known: dict[str, Any]) -> None:
    rows = get(f"/v1/stats/clicks?{DAY}").json_body["rows"]
    assert rows == [{"tag": "BUTTON", "element_id": "buy", "text": "Buy", "href": "", "count": 1, "visitors": 1}]


def test_clicks_on_one_element_count_together_however_their_props_were_written(clickhouse: Any) -> None:
    # The report counts per stored props first (chalicelib.stats.sql.clicks): the same button as two
    # tracker versions write it (another key order, a key more) must still be one row; a resent click once.
    from chalicelib.ingest import event_row
    from chalicelib.rollups.compaction import mark_changed
    from chalicelib.storage.clickhouse import EVENT_COLUMNS
    from tests.integration.test_rollups import RECORD, _event, _query

    written = [
        '{"tag":"BUTTON","id":"buy","text":"Buy","href":""}',
        '{"href":"","text":"Buy","id":"buy","tag":"BUTTON"}',
        '{"tag":"BUTTON","id":"buy","text":"Buy","href":"","track":null}',
        '{"tag":"A","id":null,"text":"Docs","href":"https://shop.example/docs"}',
    ]
    at = datetime(2026, 11, 20, 10, tzinfo=UTC)
    clicks = [_event(at.replace(minute=n), n, kind="click") | {"props": props} for n, props in enumerate(written)]
    for batch in (clicks, clicks[:1]):
        mark_changed(clickhouse, {("development", at): 0})  # as ingest marks the hours it writes
        clickhouse.insert("events", [event_row(e, RECORD) for e in batch], column_names=EVENT_COLUMNS)
    rows = stats.clicks(clickhouse, _query())["rows"]
    assert rows == [
        {"tag": "BUTTON", "element_id": "buy", "text": "Buy", "href": "", "count": 3, "visitors": 3},
        {"tag": "A", "element_id": "", "text": "Docs", "href": "https://shop.example/docs", "count": 1, "visitors": 1},
    ]


def test_realtime_shows_the_last_five_minutes(known: dict[str, Any]) -> None:
    body = get("/v1/stats/realtime").json_body
    assert (body["visitors"], body["pageviews"]) == (1, 1)
    assert body["latest"][0]["url_path"] == "/live"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("country=US", (1, 1, 1)),
        ("page=/pricing", (1, 2, 2)),  # s1's and s2's /pricing views (s2's error is on /pricing too)
        ("prop.plan=pro", (1, 1, 0)),
        ("event=signup&browser=Chrome", (1, 1, 0)),
    ],
)
def test_filters_select_events(known: dict[str, Any], query: str, expected: tuple[int, int, int]) -> None:
    metrics = get(f"/v1/stats/overview?{DAY}&{query}").json_body["metrics"]
    assert (metrics["visitors"]["value"], metrics["sessions"]["value"], metrics["pageviews"]["value"]) == expected


def test_rollups_and_raw_events_give_the_same_numbers(known: dict[str, Any]) -> None:
    client = known["client"]
    now = datetime(2026, 11, 21, tzinfo=UTC)
    query = parse_query(
        {"from": "2026-11-19", "to": "2026-11-20", "bots": "exclude"}, now=now, default_project="development"
    )
    assert stats.overview(client, query) == stats.overview(client, query, rollups=False)
    assert stats.timeseries(client, query) == stats.timeseries(client, query, rollups=False)
    # A rolling week ending mid-day: whole days from the daily rollup, the ends from the hourly one.
    rolling = parse_query(
        {"period": "7d", "bots": "exclude"},
        now=datetime(2026, 11, 20, 12, 30, tzinfo=UTC),
        default_project="development",
    )
    for q in (query, rolling):
        for dimension in ("pages", "entry_pages", "exit_pages", "referrers", "countries", "devices", "os"):
            assert stats.breakdown(client, q, dimension) == stats.breakdown(client, q, dimension, rollups=False)
    # Up to 13:00 on the 20th: "/" on the 19th and the 20th, s1's /pricing, /docs; not s2 at 14:00.
    rows = stats.breakdown(client, rolling, "pages")["rows"]
    assert [(r["value"], r["pageviews"]) for r in rows] == [("/", 2), ("/docs", 1), ("/pricing", 1)]


def test_upgrading_rebuilds_the_rollups_from_events_stored_before(settings: Settings) -> None:
    from chalicelib.ingest import event_row
    from chalicelib.kafka.records import KafkaRecord
    from chalicelib.storage.clickhouse import EVENT_COLUMNS
    from chalicelib.storage.migrations import load_migrations
    from trackflow.dev import MIGRATIONS_DIR

    database = settings.clickhouse.database
    server = connect(settings.clickhouse)
    server.command(f"CREATE DATABASE {database}")
    steps = load_migrations(MIGRATIONS_DIR, database=database)
    for migration in steps:
        if migration.version < 7:
            for statement in migration.statements:
                server.command(statement)
    record = KafkaRecord(topic="t", partition=0, offset=0, timestamp=0, key=None, value=None)
    old = [
        normalised("pageView", _ms("2026-11-20 10:00:00"), "/", visitor="A", session="s1"),
        normalised("pageView", _ms("2026-11-20 10:05:00"), "/docs", visitor="A", session="s1"),
    ]
    rows = [event_row(e, record) for e in old]
    # Stored twice in different blocks under the old schema: its views counted both.
    server.insert(f"{database}.events", rows, column_names=EVENT_COLUMNS)
    server.insert(f"{database}.events", rows[1:], column_names=EVENT_COLUMNS)
    for migration in steps:
        if migration.version >= 7:
            for statement in migration.statements:
                server.command(statement)
    client = connect(settings.clickhouse, database=database)
    query = parse_query(
        {"from": "2026-11-20", "to": "2026-11-20"},
        now=datetime(2026, 11, 21, tzinfo=UTC),
        default_project="development",
    )
    for step in ("before compaction: raw events", "after compaction: the rollups"):
        metrics = stats.overview(client, query)["metrics"]
        assert (metrics["sessions"]["value"], metrics["pageviews"]["value"]) == (1, 2), step
        assert stats.breakdown(client, query, "pages") == stats.breakdown(client, query, "pages", rollups=False)
        assert stats.timeseries(client, query) == stats.timeseries(client, query, rollups=False)
        # The upgrade marked the 20th's hour changed; the first run compacts it, the next finds nothing.
        assert compact_all(client, settle_s=0).hours == (1 if step.startswith("before") else 0)


INJECTIONS = [
    "' OR 1=1 --",
    "x') UNION ALL SELECT name FROM system.tables --",
    "\\'; DROP TABLE events; --",
    "{project:String}",
]


@pytest.mark.parametrize("value", INJECTIONS)
@pytest.mark.parametrize(
    "name",
    [
        "page",
        "referrer",
        "utm_source",
        "utm_medium",
        "utm_campaign",
        "country",
        "device",
        "browser",
        "os",
        "event",
        "host",
        "prop.plan",
    ],
)
def test_sql_in_a_filter_is_matched_as_text(known: dict[str, Any], name: str, value: str) -> None:
    from urllib.parse import quote

    response = get(f"/v1/stats/overview?{DAY}&{name}={quote(value)}")
    assert response.status_code == 200, response.body
    assert response.json_body["metrics"]["pageviews"]["value"] == 0
    assert get(f"/v1/stats/overview?{DAY}").json_body["metrics"]["pageviews"]["value"] == 4  # nothing dropped


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("prop.a'b=1", "prop.a'b"),
        ("tz=Mars/Base", "tz"),
        ("from=2026-11-20", "to"),
        ("from=2026-13-01&to=2026-13-02", "from"),
        ("period=forever", "period"),
        ("interval=minute", "interval"),
        ("limit=0", "limit"),
        ("bots=maybe", "bots"),
        ("pgae=/", "pgae"),
    ],
)
def test_bad_parameters_get_400_naming_them(known: dict[str, Any], query: str, field: str) -> None:
    response = get(f"/v1/stats/overview?{query}")
    assert response.status_code == 400, response.body
    assert response.json_body["error"]["field"] == field


def test_unknown_breakdown_is_a_400(known: dict[str, Any]) -> None:
    response = get("/v1/stats/breakdown/shoe_sizes")
    assert (response.status_code, response.json_body["error"]["field"]) == (400, "dimension")


def test_read_tokens_open_only_their_own_project(pipeline: Settings) -> None:
    store = runtime.projects()
    shop, blog = new_project("Shop"), new_project("Blog")
    store.put(shop)
    store.put(blog)
    path = f"/v1/stats/overview?project={shop.project_id}"
    assert get(path).status_code == 401
    assert get(path, {"Authorization": "Bearer tf_rt_nope.nope"}).json_body["error"]["code"] == "bad_token"
    other = get(path, {"Authorization": f"Bearer {blog.read_token}"})
    assert (other.status_code, other.json_body["error"]["code"]) == (403, "wrong_project")
    assert get(path, {"Authorization": f"Bearer {shop.read_token}"}).status_code == 200
    assert get("/v1/stats/overview?project=nosuch", {"Authorization": f"Bearer {shop.read_token}"}).status_code == 404
    listed = get("/v1/stats/projects").json_body["projects"]
    assert {p["project_id"] for p in listed} >= {"development", shop.project_id, blog.project_id}
