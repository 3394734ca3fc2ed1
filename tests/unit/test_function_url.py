"""Function URL events become the REST events the routes read, and answers go back in the 2.0 shape."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.function_url import RouteNotFoundError, rest_event, url_response

ROUTES = {"/v1/collect": {}, "/v1/config/{api_key}": {}, "/v1/stats/breakdown/{dimension}": {}, "/health": {}}


def _event(method: str, path: str, raw_query: str = "", **extra: Any) -> dict[str, Any]:
    return {
        "version": "2.0",
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": extra.get("headers", {"content-type": "text/plain"}),
        "cookies": extra.get("cookies"),
        "requestContext": {"http": {"method": method, "path": path, "sourceIp": "198.51.100.7"}, "requestId": "r1"},
        "body": extra.get("body"),
        "isBase64Encoded": extra.get("b64", False),
    }


def test_a_path_parameter_is_matched_and_decoded() -> None:
    event = rest_event(_event("GET", "/v1/config/k%2Fey"), ROUTES)
    assert event["requestContext"]["resourcePath"] == "/v1/config/{api_key}"
    assert event["pathParameters"] == {"api_key": "k/ey"}


def test_query_values_are_decoded_like_api_gateway_does_with_repeats_kept() -> None:
    event = rest_event(_event("GET", "/v1/stats/breakdown/pages", "page=%2Fcaf%C3%A9&x=a+b&x=c&empty="), ROUTES)
    assert event["multiValueQueryStringParameters"] == {"page": ["/café"], "x": ["a b", "c"], "empty": [""]}
    assert event["queryStringParameters"]["x"] == "c"
    assert rest_event(_event("GET", "/health"), ROUTES)["multiValueQueryStringParameters"] is None


def test_source_ip_body_and_cookies_carry_over() -> None:
    event = rest_event(_event("POST", "/v1/collect", body="eyJ9", b64=True, cookies=["a=1", "b=2"]), ROUTES)
    assert event["requestContext"]["identity"]["sourceIp"] == "198.51.100.7"
    assert (event["body"], event["isBase64Encoded"]) == ("eyJ9", True)
    assert event["headers"]["cookie"] == "a=1; b=2"


@pytest.mark.parametrize("path", ["/v2/collect", "/v1/config", "/v1/config/a/b", "/"])
def test_an_unknown_path_is_not_found(path: str) -> None:
    with pytest.raises(RouteNotFoundError, match="no route"):
        rest_event(_event("GET", path), ROUTES)


def test_a_trailing_slash_matches_the_route() -> None:
    assert rest_event(_event("GET", "/health/"), ROUTES)["requestContext"]["resourcePath"] == "/health"


def test_answers_join_repeated_headers_and_move_cookies() -> None:
    answer = url_response(
        {
            "statusCode": 202,
            "headers": {"Content-Type": "application/json"},
            "multiValueHeaders": {"Vary": ["Origin", "Accept"], "Set-Cookie": ["a=1", "b=2"]},
            "body": "{}",
        }
    )
    assert answer == {
        "statusCode": 202,
        "headers": {"Content-Type": "application/json", "Vary": "Origin, Accept"},
        "body": "{}",
        "isBase64Encoded": False,
        "cookies": ["a=1", "b=2"],
    }


def test_metrics_are_not_served_on_the_public_url() -> None:
    with pytest.raises(RouteNotFoundError, match="CloudWatch"):
        rest_event(_event("GET", "/metrics"), {**ROUTES, "/metrics": {}})
