"""Enrichment: clock-skew correction, URL split, UTM parameters, referrer domain."""

from __future__ import annotations

from chalicelib.collect.enrich import corrected_timestamp, enrich, referrer_domain, split_url
from chalicelib.collect.events import RawEvent, validate_event


def test_skew_correction_keeps_the_wait_and_moves_it_to_the_server_clock() -> None:
    # Client clock is 1 hour fast; the event waited 2 s in the browser before sending.
    client_now = 1_764_000_000_000 + 3_600_000
    ts = corrected_timestamp(client_now - 2_000, sent_at_ms=client_now, received_at_ms=1_764_000_000_000)
    assert ts == 1_764_000_000_000 - 2_000


def test_skew_correction_never_puts_an_event_after_it_was_received() -> None:
    assert corrected_timestamp(2_000, sent_at_ms=1_000, received_at_ms=5_000) == 5_000
    assert corrected_timestamp(9_000, sent_at_ms=None, received_at_ms=5_000) == 5_000


def test_without_sent_at_the_client_time_is_kept() -> None:
    assert corrected_timestamp(4_000, sent_at_ms=None, received_at_ms=5_000) == 4_000


def test_split_url_returns_host_path_query_and_first_utm_values() -> None:
    host, path, query, utm = split_url("https://Shop.Example:8443/a/b?utm_source=x&utm_source=y&utm_campaign=c%20d&q=1")
    assert (host, path) == ("shop.example", "/a/b")
    assert query == "utm_source=x&utm_source=y&utm_campaign=c%20d&q=1"
    assert dict(utm) == {"utm_source": "x", "utm_campaign": "c d"}


def test_split_url_tolerates_empty_and_malformed_urls() -> None:
    assert split_url("") == ("", "", "", ())
    assert split_url("http://[::1") == ("", "", "", ())
    assert split_url("https://a.example")[1] == "/"


def test_utm_values_are_decoded_like_form_fields() -> None:
    assert dict(split_url("https://a.example/?utm_term=red+shoes&utm_content=%C3%A9")[3]) == {
        "utm_term": "red shoes",
        "utm_content": "é",
    }


def test_referrer_domain_drops_www_and_handles_garbage() -> None:
    assert referrer_domain("https://www.Google.com/search?q=x") == "google.com"
    assert referrer_domain("") == ""
    assert referrer_domain("not a url") == ""
    assert referrer_domain("http://[::1") == ""


def test_enrich_produces_every_column_with_strings_and_millisecond_ints() -> None:
    raw = RawEvent(
        index=0,
        event_id="3b241101-e2bb-4255-8caf-4136c566a962",
        type="click",
        ts_ms=1_000_000_000_000,
        props_json='{"id":"buy"}',
        context={
            "url": "https://a.example/p?utm_medium=cpc",
            "referrer": "https://www.b.example/",
            "anonymous_id": "v",
        },
    )
    out = enrich(raw, project_id="p1", sent_at_ms=None, received_at_ms=1_000_000_000_500, client={"user_agent": "UA"})
    assert out["url_host"] == "a.example"
    assert out["url_path"] == "/p"
    assert out["utm_medium"] == "cpc"
    assert out["utm_source"] == ""
    assert out["referrer_domain"] == "b.example"
    assert out["timestamp"] == 1_000_000_000_000
    assert out["received_at"] == 1_000_000_000_500
    assert out["props"] == '{"id":"buy"}'
    assert out["user_agent"] == "UA"


def test_session_utm_from_the_context_fills_in_when_the_url_has_none() -> None:
    raw = RawEvent(
        0,
        "3b241101-e2bb-4255-8caf-4136c566a962",
        "click",
        1,
        "{}",
        {"url": "https://a.example/p?utm_medium=cpc", "utm_source": "news", "utm_medium": "kept"},
    )
    out = enrich(raw, project_id="p", sent_at_ms=None, received_at_ms=2, client={})
    assert (out["utm_source"], out["utm_medium"]) == ("news", "cpc")


def test_a_route_fragment_stays_in_the_path_and_an_anchor_does_not() -> None:
    assert split_url("https://a.example/app/#/cart?x=1")[1] == "/app/#/cart?x=1"
    assert split_url("https://a.example/#!/cart")[1] == "/#!/cart"
    assert split_url("https://a.example/docs#install")[1] == "/docs"


def test_a_referrer_from_the_pages_own_site_is_no_referrer_domain() -> None:
    event = validate_event(
        0,
        {
            "event_id": "0" * 8 + "-0000-4000-8000-" + "0" * 12,
            "type": "pageView",
            "ts": 1_764_000_000_000,
            "context": {"url": "https://www.shop.example/b", "referrer": "https://shop.example/a"},
        },
        {},
    )
    row = enrich(event, project_id="p", sent_at_ms=None, received_at_ms=1_764_000_000_000, client={})
    assert row["referrer"] == "https://shop.example/a"
    assert row["referrer_domain"] == ""
