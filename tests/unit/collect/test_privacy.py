"""What is kept of URLs and custom properties (chalicelib.collect.privacy): the rules docs/security.md states."""

from __future__ import annotations

import orjson
import pytest

from chalicelib.collect.enrich import enrich
from chalicelib.collect.events import validate_event
from chalicelib.collect.privacy import (
    REDACTED,
    check_keep_params,
    clean_props,
    clean_query,
    clean_url,
    keep_set,
    looks_secret,
)

DEFAULT = keep_set(())


def test_a_reset_link_keeps_only_its_campaign() -> None:
    url = "https://shop.example/reset?token=4f2a9c81d07e4b6a&email=ana%40mail.example&utm_source=newsletter"
    assert clean_url(url, DEFAULT) == "https://shop.example/reset?utm_source=newsletter"


def test_default_list_keeps_utm_ref_and_source_in_order_and_drops_the_rest() -> None:
    query = "q=shoes&utm_medium=cpc&session=abc&ref=twitter&page=2&source=app&utm_campaign=spring"
    assert clean_query(query, DEFAULT) == "utm_medium=cpc&ref=twitter&source=app&utm_campaign=spring"


def test_click_ids_stay_as_a_bare_flag_without_their_value() -> None:
    assert clean_query("gclid=Cj0KCQiA-secret&fbclid=IwAR3x&msclkid=abc", DEFAULT) == "gclid&fbclid&msclkid"


def test_a_project_keeps_its_own_parameters_whatever_their_case() -> None:
    keep = keep_set(("q", "Page"))
    assert clean_query("Q=shoes&page=2&sort=price", keep) == "Q=shoes&page=2"


def test_a_kept_parameter_holding_an_email_or_a_token_is_redacted() -> None:
    keep = keep_set(("q",))
    query = "utm_campaign=ana%40mail.example&q=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig&ref=9b1deb4d3b7d4bad9bdd2b0d"
    assert clean_query(query, keep) == f"utm_campaign={REDACTED}&q={REDACTED}&ref={REDACTED}"


@pytest.mark.parametrize(
    "value",
    [
        "black_friday_2025",
        "summer_newsletter_2026_week_12",
        "Q3_2026_Retargeting_US",
        "MyCampaignName2026Spring",
        "spring-sale-2026-email-blast",
        "newsletter",
    ],
)
def test_campaign_names_are_not_mistaken_for_tokens(value: str) -> None:
    assert not looks_secret(value)


@pytest.mark.parametrize(
    "value",
    [
        "3f9a1c2b7d4e5f60a1b2c3d4e5f60718",
        "9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d",
        "aGVsbG8gd29ybGQgdGhpcyBpcyBhIHRva2Vu",
        "sk_live_51H8xYzAbCdEfGhIjKlMnOp",
        "Xk9fQ2pLmN7rT5vW8yZ1",
        "ana.maria+promo@mail.example",
    ],
)
def test_tokens_and_addresses_are_recognised(value: str) -> None:
    assert looks_secret(value)


def test_a_route_fragment_keeps_its_path_and_cleans_its_query_and_an_anchor_is_dropped() -> None:
    assert clean_url("https://a.example/app#/cart?session=s1&ref=tw", DEFAULT) == "https://a.example/app#/cart?ref=tw"
    assert clean_url("https://a.example/cb#access_token=eyJabc&state=1", DEFAULT) == "https://a.example/cb"
    assert clean_url("https://a.example/p#pricing", DEFAULT) == "https://a.example/p"


def test_urls_without_query_or_fragment_and_malformed_ones() -> None:
    assert clean_url("https://a.example/p", DEFAULT) == "https://a.example/p"
    assert clean_url("", DEFAULT) == ""
    assert clean_url("http://[::1?token=x", DEFAULT) == ""


def test_properties_named_like_secrets_and_email_values_are_redacted_at_every_level() -> None:
    props = {
        "plan": "pro",
        "Email": "ana@mail.example",
        "user": {"apiKey": "k-1", "password": "hunter2", "note": "write to bo@mail.example", "empty_token": ""},
        "list": ["a", "c@d.example"],
        "count": 3,
    }
    assert clean_props(props) == {
        "plan": "pro",
        "Email": REDACTED,
        "user": {"apiKey": REDACTED, "password": REDACTED, "note": REDACTED, "empty_token": ""},
        "list": ["a", REDACTED],
        "count": 3,
    }


def test_keep_param_names_are_checked() -> None:
    assert check_keep_params([" q ", "page", "q"]) == ("q", "page")
    with pytest.raises(ValueError, match="not a query parameter name"):
        check_keep_params(["a b"])
    with pytest.raises(ValueError, match="click id"):
        check_keep_params(["gclid"])
    with pytest.raises(ValueError, match="at most 50"):
        check_keep_params([f"p{i}" for i in range(51)])


def _event(props: dict[str, object], *, etype: str = "pageView", **context: str) -> object:
    raw = {"event_id": "3b241101-e2bb-4255-8caf-4136c566a962", "type": etype, "ts": 1_764_000_000_000, "props": props}
    return validate_event(0, raw, dict(context))


def test_enrich_stores_only_cleaned_urls_referrers_click_links_and_campaigns() -> None:
    event = _event(
        {"tag": "a", "href": "https://a.example/verify?code=123456&utm_source=mail", "email": "x@y.example"},
        etype="click",
        url="https://a.example/login?magic=Xk9fQ2pLmN7rT5vW8yZ1&q=hats&utm_campaign=ana%40mail.example",
        referrer="https://mail.example/inbox?thread=88&ref=digest",
        utm_source="bo@mail.example",
    )
    row = enrich(
        event, project_id="p", sent_at_ms=None, received_at_ms=1_764_000_000_001, client={}, keep=keep_set(("q",))
    )
    assert row["url"] == f"https://a.example/login?q=hats&utm_campaign={REDACTED}"
    assert row["url_query"] == f"q=hats&utm_campaign={REDACTED}"
    assert row["referrer"] == "https://mail.example/inbox?ref=digest"
    assert row["utm_campaign"] == REDACTED
    assert row["utm_source"] == REDACTED  # the session's campaign kept by the tracker
    props = orjson.loads(row["props"])  # type: ignore[arg-type]
    assert props == {"tag": "a", "href": "https://a.example/verify?utm_source=mail", "email": REDACTED}
