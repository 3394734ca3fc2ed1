"""Any query string, any Authorization header: every stats endpoint answers 200 or a JSON 4xx naming a field.

Driven through ``chalice.test.Client``, which hands routes what API Gateway
does: URL-decoded Unicode values. Against a real (empty) chDB database.
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
from chalicelib.stats_params import COMMON_PARAMS, FILTER_COLUMNS

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
