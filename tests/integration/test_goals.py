"""Goals, conversion breakdowns and funnels against hand-counted journeys, on the real engine.

Project ``shop`` has four goals (``pricing``: page /pricing; ``blog``: page
/blog/*; ``signup``: event signup; ``signup-pro``: signup with plan = pro)
and a saved funnel ``/`` -> ``pricing`` -> ``signup`` within one hour. One
session per visitor, on 2026-11-20 (UTC) unless said:

- A 10:00 ``/``, 10:05 ``/pricing``, 10:10 ``/`` (back), 10:12 ``/pricing``, 10:20 signup (pro)
- B 10:00 ``/``, 10:30 ``/pricing``, 12:00 signup (free): after the hour
- C 11:00 ``/pricing``, 11:05 ``/``: the pricing page came first
- D 09:00 ``/blog/post-1`` (from news.example), 09:10 ``/pricing``, 09:15 signup (pro), that event
  delivered twice
- E 13:00 ``/`` (from google.com)
- F 19:00 ``/``, 19:10 ``/pricing``: 00:30 on the 21st in Asia/Kolkata
- G 2026-11-19 19:00 ``/``: 00:30 on the 20th in Asia/Kolkata
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from chalice.test import Client

import app
from chalicelib import runtime
from chalicelib.goals import Funnel, new_goal
from chalicelib.ingest import ingest
from chalicelib.projects import named_project
from chalicelib.settings import Settings, load_settings
from chalicelib.storage.clickhouse import connect
from chalicelib.storage.migrations import migrate
from tests.conftest import make_env
from tests.integration.test_stats import _ms, _payload, normalised
from trackflow.broker import EmbeddedBroker
from trackflow.dev import MIGRATIONS_DIR
from trackflow.topics import ensure_topics

pytestmark = pytest.mark.integration

UTC_DAY = "project=shop&from=2026-11-20&to=2026-11-20"
KOLKATA_DAY = UTC_DAY + "&tz=Asia/Kolkata"


def _visit(visitor: str, *steps: tuple[str, str, str], **fields: Any) -> list[dict[str, Any]]:
    """(time, page view path or event type, plan) steps of one visitor's session."""
    events = []
    for at, what, plan in steps:
        day = "2026-11-19" if visitor == "G" else "2026-11-20"
        if what.startswith("/"):
            event = normalised("pageView", _ms(f"{day} {at}"), what, visitor=visitor, session=f"s-{visitor}", **fields)
        else:
            event = normalised(
                what,
                _ms(f"{day} {at}"),
                "/signup",
                visitor=visitor,
                session=f"s-{visitor}",
                props=orjson.dumps({"plan": plan}).decode(),
                **fields,
            )
        events.append(event | {"project_id": "shop"})
    return events


@pytest.fixture(scope="module")
def shop(broker: EmbeddedBroker, data_dir: Path) -> Iterator[Settings]:
    conf = load_settings(make_env(broker, data_dir))
    ensure_topics(conf.bootstrap_servers, {conf.events_topic: 1, conf.dlq_topic: 1})
    migrate(connect(conf.clickhouse), MIGRATIONS_DIR, database=conf.clickhouse.database)
    runtime.reset()
    runtime.configure(settings=conf)
    project = replace(
        named_project("shop"),
        goals=(
            new_goal("Pricing", page="/pricing"),
            new_goal("Blog", page="/blog/*"),
            new_goal("Signup", event="signup"),
            new_goal("Signup pro", event="signup", props=(("plan", "pro"),)),
        ),
        funnels=(Funnel("buy", "Home to signup", ("/", "pricing", "signup"), 3600),),
    )
    runtime.projects().put(project)
    journeys = [
        _visit(
            "A",
            ("10:00:00", "/", ""),
            ("10:05:00", "/pricing", ""),
            ("10:10:00", "/", ""),
            ("10:12:00", "/pricing", ""),
            ("10:20:00", "signup", "pro"),
        ),
        _visit("B", ("10:00:00", "/", ""), ("10:30:00", "/pricing", ""), ("12:00:00", "signup", "free")),
        _visit("C", ("11:00:00", "/pricing", ""), ("11:05:00", "/", "")),
        _visit(
            "D",
            ("09:00:00", "/blog/post-1", ""),
            ("09:10:00", "/pricing", ""),
            ("09:15:00", "signup", "pro"),
            referrer_domain="news.example",
        ),
        _visit("E", ("13:00:00", "/", ""), referrer_domain="google.com"),
        _visit("F", ("19:00:00", "/", ""), ("19:10:00", "/pricing", "")),
        _visit("G", ("19:00:00", "/", "")),
    ]
    d_signup = journeys[3][-1]
    writer, dlq = runtime.writer(), runtime.sender()
    stored = ingest(
        _payload(*journeys, first_offset=0), writer=writer, dlq=dlq, dlq_topic=conf.dlq_topic, now_ms=runtime.now_ms
    )
    again = ingest(
        _payload([d_signup], first_offset=100), writer=writer, dlq=dlq, dlq_topic=conf.dlq_topic, now_ms=runtime.now_ms
    )
    assert (stored["inserted"], again["inserted"]) == (17, 1)  # D's signup is stored twice, counted once
    yield project
    runtime.reset()


def _get(path: str, query: str, project: Any) -> Any:
    with Client(app.app) as client:
        response = client.http.get(f"{path}?{query}", headers={"Authorization": f"Bearer {project.read_token}"})
    assert response.status_code == 200, response.body
    return response.json_body


def _by_id(body: dict[str, Any]) -> dict[str, tuple[int, int, float]]:
    return {g["id"]: (g["visitors"], g["conversions"], g["conversion_rate"]) for g in body["goals"]}


@pytest.mark.parametrize(
    ("query", "expected", "visitors"),
    [
        (
            UTC_DAY,
            {"pricing": (5, 6, 83.3), "blog": (1, 1, 16.7), "signup": (3, 3, 50.0), "signup-pro": (2, 2, 33.3)},
            6,
        ),
        (
            KOLKATA_DAY,
            {"pricing": (4, 5, 66.7), "blog": (1, 1, 16.7), "signup": (3, 3, 50.0), "signup-pro": (2, 2, 33.3)},
            6,
        ),
    ],
)
def test_goals_count_converted_visitors_and_conversions_once_each(
    shop: Any, query: str, expected: Any, visitors: int
) -> None:
    body = _get("/v1/stats/goals", query, shop)
    assert body["visitors"]["value"] == visitors
    assert _by_id(body) == expected
    assert body["goals"][0]["definition"] == "page view of /pricing"
    assert body["goals"][0]["previous"] == {"visitors": 0, "conversions": 0, "conversion_rate": 0.0}
    assert body["funnels"] == [
        {"id": "buy", "name": "Home to signup", "steps": ["/", "pricing", "signup"], "window_s": 3600}
    ]


def test_the_previous_period_has_its_own_conversions(shop: Any) -> None:
    body = _get("/v1/stats/goals", "project=shop&from=2026-11-21&to=2026-11-21", shop)
    assert body["visitors"] == {"value": 0, "previous": 6}
    assert body["goals"][2]["previous"] == {"visitors": 3, "conversions": 3, "conversion_rate": 50.0}


def test_breakdowns_with_a_goal_become_conversion_tables(shop: Any) -> None:
    referrers = _get("/v1/stats/breakdown/referrers", UTC_DAY + "&goal=signup", shop)
    assert [(r["value"], r["visitors"], r["converted_visitors"], r["conversion_rate"]) for r in referrers["rows"]] == [
        ("", 4, 2, 50.0),
        ("news.example", 1, 1, 100.0),
        ("google.com", 1, 0, 0.0),
    ]
    pages = _get("/v1/stats/breakdown/pages", UTC_DAY + "&goal=signup", shop)
    assert [(r["value"], r["visitors"], r["converted_visitors"]) for r in pages["rows"]] == [
        ("/pricing", 5, 3),
        ("/", 5, 2),
        ("/blog/post-1", 1, 1),
    ]
    assert pages["goal"]["id"] == "signup"


def test_breakdowns_with_a_goal_are_the_conversion_tables_each_endpoint_gives(shop: Any) -> None:
    asked = ["referrers", "pages", "entry_pages", "countries"]
    body = _get("/v1/stats/breakdowns", UTC_DAY + f"&goal=signup&dimensions={','.join(asked)}", shop)
    assert body["goal"]["id"] == "signup" and [b["dimension"] for b in body["breakdowns"]] == asked
    for found in body["breakdowns"]:
        alone = _get(f"/v1/stats/breakdown/{found['dimension']}", UTC_DAY + "&goal=signup", shop)
        assert found["rows"] == alone["rows"], found["dimension"]
    assert [(r["value"], r["converted_visitors"]) for r in body["breakdowns"][0]["rows"]] == [
        ("", 2),
        ("news.example", 1),
        ("google.com", 0),
    ]


@pytest.mark.parametrize(
    ("query", "reached", "medians"),
    [
        (UTC_DAY, [5, 3, 1], [None, 600.0, 900.0]),  # step 2: A 5 min, F 10 min, B 30 min
        (KOLKATA_DAY, [5, 2, 1], [None, 1050.0, 900.0]),  # step 2: A 5 min, B 30 min
    ],
)
def test_a_funnel_counts_each_visitor_at_the_furthest_step_reached_in_order_within_the_window(
    shop: Any, query: str, reached: list[int], medians: list[Any]
) -> None:
    for params in ("&funnel=buy", "", "&steps=/,pricing,signup&window=1h"):  # "": the first saved funnel
        body = _get("/v1/stats/funnel", query + params, shop)
        steps = body["steps"]
        assert [s["visitors"] for s in steps] == reached
        assert [s["median_s_from_previous"] for s in steps] == medians
        assert [s["label"] for s in steps] == ["/", "Pricing", "Signup"]
        assert steps[1]["dropped"] == reached[0] - reached[1]
        assert steps[2]["conversion_from_first"] == round(100 * reached[2] / reached[0], 1)
        assert body["window_s"] == 3600
    longer = _get("/v1/stats/funnel", UTC_DAY + "&funnel=buy&window=3h", shop)
    assert [s["visitors"] for s in longer["steps"]] == [5, 3, 2]  # B's signup 2 h after her first page


def test_funnel_and_goal_parameters_that_cannot_work_are_400_naming_the_problem(shop: Any) -> None:
    cases = [
        ("&steps=" + ",".join(["/"] * 9), "steps", "2 to 8 steps"),
        ("&steps=/", "steps", "2 to 8 steps"),
        ("&steps=/,,pricing", "steps", "step 2 is empty"),
        ("&steps=/,nope", "steps", "neither a path", 404),
        ("&steps=/,/" + "x" * 10_000, "steps", "longer than"),
        ("&steps=/,/" + "x" * 600, "steps", "at most 512"),
        ("&steps=/,pricing&window=3650d", "window", "at most 30d"),
        ("&steps=/,pricing&window=soon", "window", "duration"),
        ("&funnel=nope", "funnel", "unknown funnel", 404),
        ("&funnel=buy&steps=/,pricing", "steps", "not both"),
    ]
    with Client(app.app) as client:
        for extra, field, message, *status in cases:
            response = client.http.get(
                f"/v1/stats/funnel?{UTC_DAY}{extra}", headers={"Authorization": f"Bearer {shop.read_token}"}
            )
            assert response.status_code == (status or [400])[0], (extra[:60], response.body[:200])
            error = orjson.loads(response.body)["error"]
            assert error["field"] == field and message in error["message"], (extra[:60], error)
        unknown = client.http.get(
            f"/v1/stats/breakdown/referrers?{UTC_DAY}&goal=nope", headers={"Authorization": f"Bearer {shop.read_token}"}
        )
        assert unknown.status_code == 404 and orjson.loads(unknown.body)["error"]["code"] == "unknown_goal"
        other = named_project("other")
        runtime.projects().put(other)
        foreign = client.http.get(
            f"/v1/stats/funnel?{UTC_DAY}&funnel=buy", headers={"Authorization": f"Bearer {other.read_token}"}
        )
        assert foreign.status_code == 403


def test_a_visitor_whose_first_attempt_stalls_counts_at_the_later_attempt_and_leaves_the_medians_alone(
    shop: Any,
) -> None:
    """H tries at 08:00 (a signup at 08:30 without the pricing page), then at 10:00 goes home, pricing,
    signup: windowFunnel counts her at step 3 from 10:00. The medians follow each visitor's chain from
    their first home page, which for H stops at step 2, so only the other visitors' times are in them."""
    edge = replace(named_project("edge"), goals=shop.goals)
    runtime.projects().put(edge)
    events = _visit(
        "H",
        ("08:00:00", "/", ""),
        ("08:30:00", "signup", "free"),
        ("10:00:00", "/", ""),
        ("10:05:00", "/pricing", ""),
        ("10:10:00", "signup", "free"),
    ) + _visit("I", ("11:00:00", "/", ""), ("11:20:00", "/pricing", ""), ("11:50:00", "signup", "pro"))
    conf = runtime.settings()
    ingest(
        _payload([e | {"project_id": "edge"} for e in events], first_offset=500),
        writer=runtime.writer(),
        dlq=runtime.sender(),
        dlq_topic=conf.dlq_topic,
        now_ms=runtime.now_ms,
    )
    body = _get("/v1/stats/funnel", "project=edge&from=2026-11-20&to=2026-11-20&steps=/,pricing,signup&window=1h", edge)
    assert [s["visitors"] for s in body["steps"]] == [2, 2, 2]
    assert [s["median_s_from_previous"] for s in body["steps"]] == [None, 1200.0, 1800.0]  # I's alone
