"""Request-level enrichment: user agent, bots, country, and the salted visitor hash."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from chalicelib.collect.client_info import client_ip, country, daily_salt, parse_agent, visitor_hash

IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
IPAD = "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
CHROME_LINUX = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36"
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
CURL = "curl/8.5.0"


@pytest.mark.parametrize(
    ("ua", "browser", "os", "device", "bot"),
    [
        (IPHONE, "Mobile Safari", "iOS", "mobile", False),
        (IPAD, "Mobile Safari", "iOS", "tablet", False),
        (CHROME_LINUX, "Chrome", "Linux", "desktop", False),
        (GOOGLEBOT, "Googlebot", "", "bot", True),
        (CURL, "curl", "", "bot", True),
        ("", "", "", "unknown", False),
    ],
)
def test_parses_browser_os_device_and_flags_bots(ua: str, browser: str, os: str, device: str, bot: bool) -> None:
    agent = parse_agent(ua)
    assert (agent.browser, agent.os, agent.device_type, agent.is_bot) == (browser, os, device, bot)


def test_versions_are_major_dot_minor() -> None:
    agent = parse_agent(IPHONE)
    assert (agent.browser_version, agent.os_version) == ("17.4", "17.4")


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"cloudfront-viewer-country": "de"}, "DE"),
        ({"cf-ipcountry": "FR"}, "FR"),
        ({"cf-ipcountry": "XX"}, ""),
        ({"cf-ipcountry": "T1"}, ""),
        ({}, ""),
    ],
)
def test_country_comes_from_cdn_headers(headers: dict[str, str], expected: str) -> None:
    assert country(headers) == expected


def test_client_ip_prefers_the_first_forwarded_hop() -> None:
    assert client_ip({"x-forwarded-for": "203.0.113.7, 10.0.0.1"}, "10.0.0.2") == "203.0.113.7"
    assert client_ip({}, "198.51.100.4") == "198.51.100.4"


def test_visitor_hash_is_stable_within_a_day_and_changes_with_the_day_project_ip_and_agent() -> None:
    monday = daily_salt(b"secret", datetime(2026, 11, 23, 1, tzinfo=UTC))
    monday_late = daily_salt(b"secret", datetime(2026, 11, 23, 23, tzinfo=UTC))
    tuesday = daily_salt(b"secret", datetime(2026, 11, 24, 1, tzinfo=UTC))
    base = visitor_hash(monday, project_id="p", ip="203.0.113.7", user_agent=IPHONE)
    assert base == visitor_hash(monday_late, project_id="p", ip="203.0.113.7", user_agent=IPHONE)
    assert base != visitor_hash(tuesday, project_id="p", ip="203.0.113.7", user_agent=IPHONE)
    assert base != visitor_hash(monday, project_id="q", ip="203.0.113.7", user_agent=IPHONE)
    assert base != visitor_hash(monday, project_id="p", ip="203.0.113.8", user_agent=IPHONE)
    assert base != visitor_hash(monday, project_id="p", ip="203.0.113.7", user_agent=IPAD)
    assert 0 < base < 2**63
    assert base != visitor_hash(
        daily_salt(b"other", datetime(2026, 11, 23, tzinfo=UTC)), project_id="p", ip="203.0.113.7", user_agent=IPHONE
    )
