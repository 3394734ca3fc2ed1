"""Any bytes a client can send: every stats and collect request answers 2xx or a JSON 4xx naming the problem.

Driven through ``chalice.test.Client``, which hands routes what API Gateway
does: URL-decoded Unicode values, headers as given. Against a real (empty)
chDB database and the embedded broker.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from chalice.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import app
from chalicelib.settings import Settings
from chalicelib.stats.params import COMMON_PARAMS, FILTER_COLUMNS

pytestmark = pytest.mark.integration

ENDPOINTS = (
    "overview",
    "timeseries",
    "breakdown/pages",
    "breakdown/countries",
    "breakdown/shoe_sizes",
    "errors",
    "events",
    "clicks",
    "realtime",
)
NAMES = [*sorted(COMMON_PARAMS | set(FILTER_COLUMNS)), "prop.plan", "prop.a'b", "name", "property", "x"]
# Values API Gateway can hand over: Unicode digits, far dates, huge numbers, control characters.
tricky = st.sampled_from(
    [
        "²",
        "٣",
        "\uff11\uff10"  # fullwidth 10,
        "9" * 5000,
        "-1",
        "0",
        "1e3",
        "9999-12-31",
        "0001-01-01",
        "2026-02-30",
        "2026-11-20",
        "7d",
        "today",
        "Asia/Kolkata",
        "Etc/GMT+14",
        "../../etc",
        "\x00",
        "\ud800",
        "include",
        "hour",
        "development",
        "p" * 300,
    ]
)
values = tricky | st.text(max_size=30)
queries = st.dictionaries(st.sampled_from(NAMES), values, max_size=5)
tokens = (
    st.none()
    | st.sampled_from(["Bearer tf_rt_development.x", "Bearer ünïcødé", "Basic x", "Bearer "])
    | st.text(max_size=40)
)


def _query(params: dict[str, str]) -> str:
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='', errors='surrogatepass')}" for k, v in params.items())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(endpoint=st.sampled_from(ENDPOINTS), params=queries, authorization=tokens)
def test_any_query_gets_200_or_a_json_4xx_naming_the_problem(
    pipeline: Settings, endpoint: str, params: dict[str, str], authorization: str | None
) -> None:
    headers: dict[str, Any] = {} if authorization is None else {"Authorization": authorization}
    with Client(app.app) as client:
        response = client.http.get(f"/v1/stats/{endpoint}?{_query(params)}", headers=headers)
    assert response.status_code in (200, 400, 401, 403, 404), (endpoint, params, response.body)
    if response.status_code != 200:
        error = response.json_body["error"]
        assert error["code"] and error["message"]


header_text = st.text(max_size=60) | st.sampled_from(["ünïcødé/1.0", "Mozilla/5.0 (X11) Firefox/140.0", "\u202e", ""])
ids = st.uuids().map(str) | st.text(max_size=40)
collect_events = st.lists(
    st.fixed_dictionaries(
        {
            "event_id": ids,
            "type": st.text(max_size=70),
            "ts": st.integers(min_value=-(2**70), max_value=2**70) | values,
        },
        optional={
            "props": st.dictionaries(st.text(max_size=10), values | st.integers(), max_size=4),
            "context": st.dictionaries(
                st.sampled_from(["url", "referrer", "anonymous_id", "title"]), values, max_size=4
            ),
        },
    ),
    max_size=4,
)
bodies = st.fixed_dictionaries(
    {"api_key": st.sampled_from(["YOUR_API_KEY", "", "nope", "\u00fc" * 200]), "events": collect_events},
    optional={"sent_at": values | st.integers(), "context": st.dictionaries(st.text(max_size=8), values, max_size=3)},
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=bodies,
    user_agent=header_text,
    origin=st.none() | header_text,
    content_type=st.sampled_from(["text/plain", "application/json", "text/plain; charset=utf-8", "image/png", ""]),
)
def test_any_collect_request_gets_202_or_a_json_4xx(
    pipeline: Settings, body: dict[str, Any], user_agent: str, origin: str | None, content_type: str
) -> None:
    import json

    headers = {"Content-Type": content_type, "User-Agent": user_agent}
    if origin is not None:
        headers["Origin"] = origin
    with Client(app.app) as client:
        response = client.http.post(
            "/v1/collect", headers=headers, body=json.dumps(body).encode()
        )  # escapes keep lone surrogates
    assert response.status_code in (202, 400, 401, 403, 413, 415, 429), (body, headers, response.body)
    if response.status_code != 202:
        assert response.json_body["error"]["code"]
