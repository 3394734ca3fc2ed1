"""chalicelib.stats.params: the stats API's query string."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from chalicelib.errors import RequestError
from chalicelib.stats.params import Filter, StatsQuery, parse_query

NOW = datetime(2026, 11, 20, 12, 30, tzinfo=UTC)


def q(**params: str) -> StatsQuery:
    return parse_query(params, now=NOW, default_project="development", extra=frozenset({"name"}))


def test_the_default_is_the_last_seven_days_up_to_the_next_whole_hour_by_day() -> None:
    query = q()
    assert (query.start, query.end) == (datetime(2026, 11, 13, 13, tzinfo=UTC), datetime(2026, 11, 20, 13, tzinfo=UTC))
    assert (query.interval, query.tz, query.limit) == ("day", "UTC", 10)


def test_bots_count_by_default_only_in_the_development_project() -> None:
    assert q().include_bots is True  # curl and automated browsers are how people try it out
    assert q(bots="exclude").include_bots is False
    shop = parse_query({"project": "shop"}, now=NOW)
    assert shop.include_bots is False
    assert parse_query({"project": "shop", "bots": "include"}, now=NOW).include_bots is True


def test_the_device_filter_also_answers_to_its_column_name() -> None:
    assert q(device_type="mobile").filters == q(device="mobile").filters == (Filter("device", "mobile"),)


def test_from_and_to_are_whole_local_days_both_included() -> None:
    query = q(**{"from": "2026-11-01", "to": "2026-11-02", "tz": "Europe/Berlin"})
    assert query.start == datetime(2026, 10, 31, 23, tzinfo=UTC)
    assert query.end == datetime(2026, 11, 2, 23, tzinfo=UTC)
    assert query.previous().start == datetime(2026, 10, 29, 23, tzinfo=UTC)


def test_today_follows_the_time_zone_and_gets_hourly_buckets() -> None:
    query = q(period="today", tz="Asia/Tokyo")  # 12:30 UTC is 21:30 in Tokyo
    assert (query.start, query.end, query.interval) == (
        datetime(2026, 11, 19, 15, tzinfo=UTC),
        datetime(2026, 11, 20, 15, tzinfo=UTC),
        "hour",
    )


def test_filters_and_properties_are_collected_and_endpoint_parameters_are_not() -> None:
    query = q(country="DE", **{"prop.plan": "pro", "name": "signup"})
    assert query.filters == (Filter("country", "DE"), Filter("prop.plan", "pro"))
    assert query.filters[1].property == "plan"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"tz": "Nowhere/Town"}, "tz"),
        ({"from": "2026-11-01"}, "to"),
        ({"from": "2026-11-05", "to": "2026-11-01"}, "to"),
        ({"from": "2025-01-01", "to": "2026-11-01"}, "from"),
        ({"period": "7d", "from": "2026-11-01", "to": "2026-11-02"}, "period"),
        ({"interval": "hour", "period": "90d"}, "interval"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "²"}, "limit"),  # what API Gateway hands over for %C2%B2: a digit to str.isdigit()
        ({"limit": "٣"}, "limit"),
        ({"limit": "9" * 5000}, "limit"),  # past int()'s digit limit
        ({"from": "9999-12-31", "to": "9999-12-31"}, "from"),
        ({"from": "0001-01-01", "to": "0001-01-01"}, "from"),
        ({"from": "\uff12\uff10\uff12\uff16-01-01", "to": "2026-01-01"}, "from"),  # fullwidth digits
        ({"project": "p" * 129}, "project"),
        ({"prop.a b": "x"}, "prop.a b"),
        ({"colour": "red"}, "colour"),
        ({"interval": ""}, "interval"),  # empty is not a value of the enum (schemathesis found it accepted)
        ({"name": "n" * 201}, "name"),  # docs/openapi.yaml: at most 200 (schemathesis again)
    ],
)
def test_bad_parameters_name_the_field(params: dict[str, str], field: str) -> None:
    with pytest.raises(RequestError) as caught:
        q(**params)
    assert caught.value.field == field


def test_a_project_is_required_outside_development() -> None:
    with pytest.raises(RequestError, match="project is required"):
        parse_query({}, now=NOW)
