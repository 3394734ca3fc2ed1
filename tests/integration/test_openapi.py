"""docs/openapi.yaml matches the app's routes, and schemathesis finds no 5xx and no answer off the schema."""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, settings

import app
from chalicelib.settings import load_settings
from tests.conftest import make_env
from tests.integration.tracker_harness import start_stack
from trackflow.broker import EmbeddedBroker
from trackflow.dev import DevStack
from trackflow.topics import ensure_topics

pytestmark = pytest.mark.integration

SPEC = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
schema = schemathesis.openapi.from_path(SPEC)


def test_every_route_is_described_and_every_described_route_exists() -> None:
    described = {
        (path, method.upper()) for path, ops in yaml.safe_load(SPEC.read_text())["paths"].items() for method in ops
    }
    routed = {(path, method) for path, methods in app.app.routes.items() for method in methods}
    assert described == routed


@pytest.fixture(scope="module")
def live(broker: EmbeddedBroker, data_dir: Path) -> Iterator[DevStack]:
    conf = load_settings(make_env(broker, data_dir, TRACKFLOW_STAGE="dev"))
    ensure_topics(conf.bootstrap_servers, {conf.events_topic: 1, conf.dlq_topic: 1})
    stack = start_stack(conf)
    yield stack
    stack.stop()


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_the_api_honours_its_schema(case: Any, live: DevStack) -> None:
    # Checked: no 5xx, and every status, header, content type and body as the spec
    # says. Not checked: how undeclared methods are refused (API Gateway does that
    # in AWS); that every schema-valid body is accepted (the validator has limits
    # JSON Schema can't say: nesting depth, total items, bytes of props); and that
    # invalid ones get exactly 400/422 (an over-long batch is a 413 on purpose).
    case.call_and_validate(
        base_url=live.api_url,
        excluded_checks=[
            schemathesis.checks.unsupported_method,
            schemathesis.checks.positive_data_acceptance,
            schemathesis.checks.negative_data_rejection,
        ],
    )


stats_schema = schemathesis.openapi.from_path(SPEC).include(path_regex="^/v1/stats/")
# The fuzzing phase, where the hooks below shape what is drawn (the coverage
# phase's fixed boundary cases bypass them).
stats_schema.config.phases.coverage.enabled = False
stats_schema.config.phases.examples.enabled = False
ZONES = sorted(zoneinfo.available_timezones())


# The stats parameters have rules across parameters that OpenAPI cannot state (the
# spec says them in words): period or from/to, not both; from and to together,
# an event's property only with the event's name; a funnel's steps or a saved one, not both;
# from not after to, at most 400 days apart, within 2000-2099; hourly series up to
# 31 days; tz an IANA zone. The hooks keep generated queries inside those rules
# *without* touching what makes a negative case invalid (a non-date, a limit out of
# range, an unknown period or interval stay as drawn): the filter drops the
# combinations the rules forbid; the map repairs only values that are
# schema-valid either way.
@stats_schema.hook("filter_query")
def _one_way_to_give_the_period(ctx: Any, query: dict[str, Any] | None) -> bool:
    query = query or {}
    return (
        not ("period" in query and ("from" in query or "to" in query))
        and ("from" in query) == ("to" in query)
        and not ("property" in query and "name" not in query)  # /v1/stats/events: a property is of an event
        and not ("steps" in query and "funnel" in query)  # /v1/stats/funnel: steps or a saved funnel, not both
        and not (query.get("interval") == "hour" and query.get("period") in ("30d", "90d"))  # hourly: 31 days at most
    )


@stats_schema.hook("map_query")
def _days_and_zones_that_exist(ctx: Any, query: dict[str, Any] | None) -> dict[str, Any] | None:
    if not query:
        return query
    tz = query.get("tz")
    if isinstance(tz, str) and tz not in ZONES:
        query["tz"] = ZONES[sum(map(ord, tz)) % len(ZONES)]
    project = query.get("project")
    if isinstance(project, str) and not project.isprintable():
        query["project"] = "".join(c for c in project if c.isprintable())
    try:
        first, last = sorted((date.fromisoformat(query["from"]), date.fromisoformat(query["to"])))
    except (KeyError, TypeError, ValueError):
        return query  # no days, or a malformed day: the negative case's point
    if not 2000 <= first.year <= 2099:
        first = first.replace(year=2000 + first.year % 100, day=min(first.day, 28))
    last = min(max(last, first), first + timedelta(days=20))
    query["from"], query["to"] = first.isoformat(), last.isoformat()
    return query


@stats_schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_the_stats_endpoints_pass_every_check(case: Any, live: DevStack) -> None:
    # Every check, positive and negative: what the schema (and the rules above)
    # allow is answered 2xx (or 401/403/404: no token, no such project), what it
    # forbids 4xx. Only how undeclared methods are refused is left to API Gateway.
    case.call_and_validate(base_url=live.api_url, excluded_checks=[schemathesis.checks.unsupported_method])
