"""The dashboard page in headless Chromium, served by the dev stack, reading the real stats API."""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.tracker_harness import Site, Traffic, anonymous_id, browser_fixture, pump, stack_fixture, wire
from trackflow.broker import EmbeddedBroker
from trackflow.dev import DevStack

pytestmark = pytest.mark.integration

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
HOSTILE_TITLE = '<img src=x onerror="window.__xss=1">'
HOSTILE_PATH = "/<script>window.__xss=2</script>"


@pytest.fixture(scope="module")
def stack(broker: EmbeddedBroker, data_dir: Path) -> Iterator[DevStack]:
    yield from stack_fixture(broker, data_dir)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from browser_fixture()


def send(api_url: str, *, visitor: str, title: str = "Home", url: str = "https://shop.example/") -> None:
    event = {
        "event_id": str(uuid.uuid4()),
        "type": "pageView",
        "ts": int(__import__("time").time() * 1000),
        "props": {"title": title},
        "context": {"url": url, "anonymous_id": visitor, "session_id": f"s-{visitor}", "title": title},
    }
    body = json.dumps({"api_key": "YOUR_API_KEY", "events": [event]}).encode()
    request = urllib.request.Request(
        f"{api_url}/v1/collect",
        data=body,
        headers={"Content-Type": "text/plain", "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 202


def text_until(page: Any, selector: str, check: Any, *, timeout_s: float = 40) -> str:
    """The element's text once ``check(text)`` holds, letting the page refresh itself meanwhile."""
    waited = 0.0
    while True:
        text: str = page.locator(selector).first.inner_text()
        if check(text):
            return text
        if waited > timeout_s:
            raise AssertionError(f"{selector} still reads {text!r} after {timeout_s} s")
        pump(page, 0.5)
        waited += 0.5


def test_dashboard_shows_tracked_visits_updates_live_and_escapes_event_text(browser: Any, stack: DevStack) -> None:
    # A visit through the real tracker on a page using the seed snippet.
    site, traffic = Site.start(), Traffic()
    try:
        visit = browser.new_context()
        wire(visit, stack.api_url, traffic)
        shop = visit.new_page()
        shop.goto(f"{site.url}/vite.html")
        anonymous_id(shop)
        pump(shop, 1.5)
        visit.close()
    finally:
        site.stop()
    send(stack.api_url, visitor="hostile", title=HOSTILE_TITLE, url=f"https://shop.example{HOSTILE_PATH}")

    context = browser.new_context(viewport={"width": 1280, "height": 1400})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(f"{stack.api_url}/")
    visitors = text_until(page, "[data-metric=visitors]", lambda t: t.strip() not in ("", "0"))
    assert int(visitors.replace(",", "")) >= 2
    assert int(page.locator("[data-metric=pageviews]").inner_text().replace(",", "")) >= 2
    text_until(page, "#pages", lambda t: HOSTILE_PATH in t)
    live_before = int(text_until(page, "#live-visitors", lambda t: int(t) >= 2))
    text_until(page, "#live-events", lambda t: HOSTILE_TITLE in t)
    assert page.evaluate("window.__xss") is None  # shown as text, never run
    assert page.locator("#chart canvas").count() == 1

    # A new visitor arrives: the live panel picks it up without a reload.
    send(stack.api_url, visitor=f"late-{uuid.uuid4().hex[:6]}")
    text_until(page, "#live-visitors", lambda t: int(t) > live_before, timeout_s=30)

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    assert errors == []
    assert requested and all(url.startswith(stack.api_url) for url in requested)  # no CDN: uPlot is bundled
    context.close()


def test_dashboard_asks_for_a_token_for_real_projects_and_says_why_it_cannot_load(
    browser: Any, stack: DevStack
) -> None:
    from chalicelib import runtime
    from chalicelib.projects import new_project

    project = new_project("Token shop")
    runtime.projects().put(project)
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{stack.api_url}/?project={project.project_id}")
    status = text_until(page, "#status", lambda t: "Could not load" in t)
    assert "read token" in status
    assert page.locator("#token-label").is_visible()
    page.fill("#token", project.read_token)
    page.dispatch_event("#token", "change")
    text_until(page, "#status", lambda t: t.startswith("Updated"))
    context.close()


def test_dashboard_custom_range_asks_for_those_days(browser: Any, stack: DevStack) -> None:
    send(stack.api_url, visitor=f"range-{uuid.uuid4().hex[:6]}")
    context = browser.new_context()
    page = context.new_page()
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    page.goto(f"{stack.api_url}/")
    text_until(page, "#status", lambda t: t.startswith("Updated"))
    page.select_option("#period", "custom")
    today = page.evaluate("new Date().toLocaleDateString('sv')")
    assert page.locator("#range").is_visible() and page.input_value("#to") == today
    text_until(page, "[data-metric=pageviews]", lambda t: t.strip() not in ("", "0"))
    assert any("from=" in url and f"to={today}" in url and "/v1/stats/overview" in url for url in asked)
    # The session tables in one request per refresh, not one each.
    tables = [url for url in asked if "/v1/stats/breakdowns?" in url and "dimensions=entry_pages%2Cexit_pages" in url]
    assert tables and not any("/v1/stats/breakdown/entry_pages" in url for url in asked)
    context.close()


def test_dashboard_keeps_its_view_in_the_address_and_shows_clicks_exit_pages_os_and_bots(
    browser: Any, stack: DevStack
) -> None:
    visitor = f"view-{uuid.uuid4().hex[:6]}"
    send(stack.api_url, visitor=visitor, url="https://shop.example/cart")
    click = {
        "event_id": str(uuid.uuid4()),
        "type": "click",
        "ts": int(__import__("time").time() * 1000),
        "props": {"tag": "BUTTON", "id": "buy", "text": "Buy now"},
        "context": {"url": "https://shop.example/cart", "anonymous_id": visitor, "session_id": f"s-{visitor}"},
    }
    request = urllib.request.Request(
        f"{stack.api_url}/v1/collect",
        data=json.dumps({"api_key": "YOUR_API_KEY", "events": [click]}).encode(),
        headers={"Content-Type": "text/plain", "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 202

    context = browser.new_context(viewport={"width": 1280, "height": 1600})
    page = context.new_page()
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/v1/stats/overview" in r.url else None)
    page.goto(f"{stack.api_url}/?period=30d")
    text_until(page, "#status", lambda t: t.startswith("Updated"))
    assert page.input_value("#period") == "30d"
    assert "project=development" in page.url and "period=30d" in page.url
    text_until(page, "#clicks", lambda t: "button#buy “Buy now”" in t)
    text_until(page, "#exit_pages", lambda t: "/cart" in t)
    text_until(page, "#os", lambda t: "Linux" in t)
    # Everything is from the last minutes: against an empty previous period the change is "new".
    assert "new" in page.locator(".card .change").first.inner_text()
    assert not any("%" in change for change in page.locator(".card .change").all_inner_texts())
    legend = page.locator(".u-legend").inner_text()
    assert "Page views" in legend and "--" not in legend
    padding = page.evaluate("parseFloat(getComputedStyle(document.getElementById('live-events')).paddingLeft)")
    assert padding >= 32  # room for "15." in the live list

    # The development project counts bots until the switch says otherwise; the address keeps the choice.
    assert page.locator("#bots").is_checked()
    page.uncheck("#bots")
    text_until(page, "#status", lambda t: t.startswith("Updated"))
    assert "bots=exclude" in page.url and "bots=exclude" in asked[-1]
    page.select_option("#period", "24h")
    text_until(page, "#status", lambda t: t.startswith("Updated"))
    page.reload()
    text_until(page, "#status", lambda t: t.startswith("Updated"))
    assert page.input_value("#period") == "24h" and not page.locator("#bots").is_checked()

    with urllib.request.urlopen(f"{stack.api_url}/favicon.ico", timeout=10) as icon:
        assert icon.status == 200 and icon.headers["Content-Type"] == "image/svg+xml"
        assert icon.read().startswith(b"<svg")
    context.close()


def _collect(api_url: str, key: str, visitor: str, steps: list[tuple[str, str]]) -> None:
    """One request of a visitor's session: (page view path | custom event type, plan) in order, a second apart."""
    now = int(__import__("time").time() * 1000) - 60_000
    events = [
        {
            "event_id": str(uuid.uuid4()),
            "type": "pageView" if what.startswith("/") else what,
            "ts": now + n * 1000,
            "props": {"plan": plan} if plan else {},
            "context": {
                "url": f"https://shop.example{what if what.startswith('/') else '/signup'}",
                "anonymous_id": visitor,
                "session_id": f"s-{visitor}",
            },
        }
        for n, (what, plan) in enumerate(steps)
    ]
    request = urllib.request.Request(
        f"{api_url}/v1/collect",
        data=json.dumps({"api_key": key, "events": events}).encode(),
        headers={"Content-Type": "text/plain", "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 202


def test_dashboard_shows_goals_a_funnel_and_conversion_tables_readable_on_a_phone(
    browser: Any, stack: DevStack
) -> None:
    from dataclasses import replace

    from chalicelib import runtime
    from chalicelib.goals import Funnel, new_goal
    from chalicelib.projects import named_project

    project = replace(
        named_project(f"goals-{uuid.uuid4().hex[:6]}"),
        goals=(new_goal("Signup", event="signup"), new_goal("Pricing", page="/pricing")),
        funnels=(Funnel("buy", "Home to signup", ("/", "pricing", "signup"), 3600),),
    )
    runtime.projects().put(project)
    key = project.api_keys[0]
    _collect(stack.api_url, key, "v1", [("/", ""), ("/pricing", ""), ("signup", "pro")])
    _collect(stack.api_url, key, "v2", [("/", ""), ("/pricing", "")])
    _collect(stack.api_url, key, "v3", [("/", "")])

    context = browser.new_context(viewport={"width": 390, "height": 1600}, device_scale_factor=1)
    context.add_init_script(f"localStorage.setItem('trackflow.token.{project.project_id}', '{project.read_token}')")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{stack.api_url}/?project={project.project_id}&period=today")
    goals = text_until(page, "#goals", lambda t: "33.3%" in t)  # 1 of 3 visitors signed up
    assert "Signup" in goals and "Pricing" in goals and "66.7%" in goals
    funnel = text_until(page, "[data-testid=funnel]", lambda t: "3. Signup" in t)
    assert (
        "1. /" in funnel
        and "2. Pricing" in funnel
        and "\u22121 (33.3% dropped)" in funnel
        and "\u22121 (50.0% dropped)" in funnel
    )
    assert page.locator("#funnel-chart .step").count() == 3

    page.select_option("#goal", "signup")
    pages = text_until(page, "#pages", lambda t: "Converted" in t)
    assert "Rate" in pages and "/pricing" in pages and "50%" in pages  # 1 of the 2 visitors of /pricing
    assert "goal=signup" in page.url
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing wider than the phone
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-goals-phone.png"), full_page=True)
    page.locator("main > .grid").first.screenshot(path=str(ARTIFACTS / "dashboard-goals-panels-phone.png"))
    assert errors == []
    context.close()
