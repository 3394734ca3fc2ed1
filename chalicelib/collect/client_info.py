"""What a request says about the visitor's client, derived once per request.

- browser, OS and device type from the User-Agent with ``ua-parser`` (its Rust
  accelerator when installed);
- ``is_bot`` from ``crawlerdetect``'s maintained crawler list;
- country from the CDN's header (``CloudFront-Viewer-Country``, ``CF-IPCountry``);
- ``visitor_hash``: a daily-salted hash of project, IP and User-Agent, for
  counting unique visitors without cookies (as Plausible does). The IP address
  itself is never returned, so it can't reach Kafka or ClickHouse.

Results are cached per User-Agent string: a site's traffic repeats a few
hundred of them.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

COUNTRY_HEADERS = ("cloudfront-viewer-country", "cf-ipcountry")
TABLET_FAMILIES = ("iPad", "Kindle", "Tablet")
MOBILE_OS = ("iOS", "Android", "Windows Phone", "BlackBerry OS", "KaiOS")


@dataclass(frozen=True)
class Agent:
    browser: str
    browser_version: str
    os: str
    os_version: str
    device_type: str
    is_bot: bool


@lru_cache(maxsize=1)
def _crawler_detect() -> object:
    from crawlerdetect import CrawlerDetect

    return CrawlerDetect()


def _version(major: str | None, minor: str | None) -> str:
    if not major:
        return ""
    return f"{major}.{minor}" if minor else major


@lru_cache(maxsize=8192)
def parse_agent(user_agent: str) -> Agent:
    """Browser, OS, device type and bot flag of a User-Agent string."""
    if not user_agent:
        return Agent("", "", "", "", "unknown", False)
    from ua_parser import parse

    result = parse(user_agent)
    browser, os, device = result.user_agent, result.os, result.device
    is_bot = bool(_crawler_detect().isCrawler(user_agent)) or (device is not None and device.family == "Spider")  # type: ignore[attr-defined]
    os_family = os.family if os else ""
    device_family = device.family if device else ""
    if is_bot:
        device_type = "bot"
    elif any(t in device_family for t in TABLET_FAMILIES) or (os_family == "Android" and "Mobile" not in user_agent):
        device_type = "tablet"
    elif os_family in MOBILE_OS:
        device_type = "mobile"
    elif os_family:
        device_type = "desktop"
    else:
        device_type = "unknown"
    return Agent(
        browser=browser.family if browser else "",
        browser_version=_version(browser.major, browser.minor) if browser else "",
        os=os_family,
        os_version=_version(os.major, os.minor) if os else "",
        device_type=device_type,
        is_bot=is_bot,
    )


def country(headers: Mapping[str, str]) -> str:
    """Two-letter country code from a CDN header, '' when there is none (or it is XX/T1)."""
    for name in COUNTRY_HEADERS:
        value = headers.get(name, "").strip().upper()
        if len(value) == 2 and value.isalpha() and value != "XX":
            return value
    return ""


def client_ip(headers: Mapping[str, str], source_ip: str | None) -> str:
    """The visitor's address: the first X-Forwarded-For hop, else the connection's."""
    forwarded = headers.get("x-forwarded-for", "")
    if forwarded:
        return forwarded.split(",", 1)[0].strip()
    return source_ip or ""


def daily_salt(secret: bytes, when: datetime | None = None) -> bytes:
    """A salt that changes every UTC day, so yesterday's hashes can't be joined with today's."""
    day = (when or datetime.now(UTC)).strftime("%Y-%m-%d")
    return hmac.new(secret, day.encode(), hashlib.sha256).digest()


def visitor_hash(salt: bytes, *, project_id: str, ip: str, user_agent: str) -> int:
    """A 63-bit anonymous visitor id for the day; the inputs can't be recovered from it."""
    digest = hashlib.blake2b(f"{project_id}\0{ip}\0{user_agent}".encode(), key=salt[:64], digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1
