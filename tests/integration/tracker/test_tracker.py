"""tracker.js in headless Chromium against the real pipeline (collect, broker, runner, chDB)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.integration.tracker_harness import (
    Site,
    Traffic,
    anonymous_id,
    pump,
    queued,
    settled,
    stored,
    wait_stored,
    wire,
)
from trackflow.dev import DevStack

pytestmark = pytest.mark.integration


def test_seed_vite_snippet_sends_pageview_click_errors_and_custom_events_once(
    context: Any, site: Site, db: Any
) -> None:
    page = context.new_page()
    page.goto(f"{site.url}/vite.html")
    visitor = anonymous_id(page)
    page.click("#buy")
    page.evaluate("setTimeout(() => { throw new Error('boom') }, 0)")
    page.evaluate("Promise.reject(new Error('nope')); 1")
    page.evaluate("track('signup', {plan: 'pro'})")
    rows = settled(db, page, visitor, 5)
    types = sorted(r[0] for r in rows)
    assert types == ["click", "error", "error", "pageView", "signup"]
    props = {r[0]: json.loads(r[2]) for r in rows if r[0] != "error"}
    assert props["click"]["tag"] == "BUTTON"
    assert props["click"]["text"] == "Buy now"
    assert props["click"]["id"] == "buy"
    assert props["signup"] == {"plan": "pro"}
    assert props["pageView"]["title"] == "Vite page"
    messages = sorted(json.loads(r[2])["message"] for r in rows if r[0] == "error")
    assert any("boom" in m for m in messages)
    assert any("nope" in m for m in messages)


def test_nextjs_pattern_commands_queued_before_the_async_script_loads_arrive_in_order(
    browser: Any, stack: DevStack, site: Site, db: Any
) -> None:
    traffic = Traffic()
    ctx = browser.new_context()
    wire(ctx, stack.api_url, traffic, tracker_delay_s=0.5)  # the inline script surely runs first
    try:
        page = ctx.new_page()
        page.goto(f"{site.url}/nextjs.html")
        assert page.evaluate("window.dataLayer.length") >= 2  # queued, not yet handled
        visitor = anonymous_id(page)
        page.click("#buy")
        rows = settled(db, page, visitor, 3)
        assert sorted(r[0] for r in rows) == ["click", "pageView", "signup"]
        assert all(e["context"]["environment"] == "development" for e in traffic.events())
    finally:
        ctx.close()


def test_spa_navigation_counts_each_new_url_once(context: Any, site: Site, db: Any, traffic: Traffic) -> None:
    page = context.new_page()
    page.goto(f"{site.url}/spa.html")
    visitor = anonymous_id(page)
    page.evaluate("history.pushState({}, '', '/spa/a')")
    page.evaluate("history.replaceState({}, '', '/spa/a')")  # same URL: not a new page
    page.evaluate("history.replaceState({}, '', '/spa/b')")
    page.evaluate("history.pushState({}, '', '/spa/b#section')")  # only the hash changed
    page.evaluate("history.back()")  # popstate back to /spa/b (hash dropped)
    pump(page, 0.3)
    page.evaluate("history.back()")  # popstate to /spa.html
    rows = settled(db, page, visitor, 4)
    paths = [r[1] for r in rows if r[0] == "pageView"]
    assert paths == ["/spa.html", "/spa/a", "/spa/b", "/spa.html"]
    assert len(rows) == 4


def test_events_pending_when_the_page_closes_arrive_through_the_beacon(
    context: Any, site: Site, db: Any, stack: DevStack, traffic: Traffic
) -> None:
    # Beacons leave after the page is gone, past Playwright's routing: this page
    # sends straight to the API with the `endpoint` option.
    page = context.new_page()
    fetched: list[str] = []
    page.on("request", lambda r: fetched.append(r.url) if r.resource_type == "fetch" and r.method == "POST" else None)
    page.goto(f"{site.url}/options.html?endpoint={stack.api_url}")
    visitor = anonymous_id(page)
    page.evaluate("track('farewell', {n: 1})")  # waits for the 1 s batch timer...
    page.close(run_before_unload=True)  # ...but the page goes first
    checker = context.new_page()
    rows = wait_stored(db, checker, visitor, 2)
    assert sorted(r[0] for r in rows) == ["farewell", "pageView"]
    assert fetched == []  # the batch timer never fired: the beacon carried them


def test_503_then_recovery_delivers_every_event_once(context: Any, site: Site, db: Any) -> None:
    refused: list[int] = []

    def unavailable(route: Any) -> None:
        if route.request.method == "POST" and len(refused) < 2:
            refused.append(1)
            route.fulfill(
                status=503,
                body='{"error":{"code":"produce_failed","message":"retry"}}',
                headers={
                    "Retry-After": "1",
                    "Access-Control-Allow-Origin": "*",
                    "Access-Control-Expose-Headers": "Retry-After",
                },
            )
        else:
            route.fallback()

    context.route("http://localhost:8000/v1/collect", unavailable)
    page = context.new_page()
    page.goto(f"{site.url}/vite.html")
    visitor = anonymous_id(page)
    page.evaluate("track('a'); track('b')")
    rows = settled(db, page, visitor, 3, timeout=40)
    assert sorted(r[0] for r in rows) == ["a", "b", "pageView"]
    assert len(refused) == 2
    assert queued(page) == 0


def test_offline_then_back_with_a_reload_in_between_loses_nothing(context: Any, site: Site, db: Any) -> None:
    context.route("http://localhost:8000/v1/collect", lambda route: route.abort("internetdisconnected"))
    page = context.new_page()
    page.goto(f"{site.url}/vite.html")
    visitor = anonymous_id(page)
    page.evaluate("track('offline-1')")
    pump(page, 2.5)  # a send failed: the events wait in localStorage
    assert queued(page) == 2
    page.reload()  # the beacon on the way out is lost too; the queue is not
    page.evaluate("track('offline-2')")
    pump(page, 1.5)
    assert stored(db, visitor) == []
    context.unroute("http://localhost:8000/v1/collect")
    page.reload()
    wait_stored(db, page, visitor, 5, timeout=45)
    pump(page, 2)
    rows = stored(db, visitor)
    assert sorted(r[0] for r in rows) == ["offline-1", "offline-2", "pageView", "pageView", "pageView"]
    assert queued(page) == 0


def console_info(page: Any) -> list[str]:
    """The page's console.info lines, as they come (the tracker says there why it does not track)."""
    said: list[str] = []
    page.on("console", lambda m: said.append(m.text) if m.type == "info" else None)
    return said


def first_line_and_a_second(page: Any, said: list[str], timeout_s: float = 10) -> list[str]:
    """``said`` once a line came (the async script may load late on a busy machine), and a second
    later, so that a line said per event rather than once would show."""
    deadline = time.monotonic() + timeout_s
    while not said and time.monotonic() < deadline:
        pump(page, 0.2)
    pump(page, 1)
    return said


@pytest.mark.parametrize(
    ("init_script", "query", "sends"),
    [
        # Do Not Track is deprecated and not read; GPC is the server's (Sec-GPC, per project).
        ("Object.defineProperty(Navigator.prototype, 'doNotTrack', {get: () => '1'})", "", True),
        ("Object.defineProperty(Navigator.prototype, 'webdriver', {get: () => true})", "", False),
        ("Object.defineProperty(Navigator.prototype, 'webdriver', {get: () => true})", "trackWebdriver=1", True),
    ],
    ids=["dnt-not-read", "webdriver-skipped", "webdriver-allowed"],
)
def test_privacy_signals_and_automation_and_a_declining_tracker_says_why_once(
    context: Any, traffic: Traffic, site: Site, init_script: str, query: str, sends: bool
) -> None:
    context.add_init_script(init_script)
    page = context.new_page()
    said = console_info(page)
    page.goto(f"{site.url}/options.html?{query}")
    page.click("#go")
    pump(page, 2.5)
    assert bool(traffic.posts) is sends
    expected = [] if sends else ["trackflow: off, webdriver (trackWebdriver: true)"]
    if not sends:
        first_line_and_a_second(page, said)
    assert [s for s in said if s.startswith("trackflow")] == expected  # one line, not one per event


def test_a_browser_sending_gpc_is_told_once_that_the_project_keeps_nothing(
    browser: Any, stack: Any, site: Site, db: Any
) -> None:
    context = browser.new_context(extra_http_headers={"Sec-GPC": "1"})
    wire(context, stack.api_url, Traffic())
    try:
        page = context.new_page()
        said = console_info(page)
        page.goto(f"{site.url}/vite.html")
        visitor = anonymous_id(page)
        page.evaluate("track('one'); track('two')")
        assert first_line_and_a_second(page, said) == ["trackflow: off, gpc"]  # dev honours Sec-GPC
        assert stored(db, visitor) == []
    finally:
        context.close()


def test_an_opted_out_browser_says_so_on_the_console(context: Any, site: Site, traffic: Traffic) -> None:
    page = context.new_page()
    said = console_info(page)
    page.goto(f"{site.url}/vite.html")
    page.evaluate("track('optOut'); track('one'); track('two')")
    assert first_line_and_a_second(page, said) == ["trackflow: off, optOut"]


def test_opt_out_stops_sending_and_opt_in_resumes(context: Any, site: Site, traffic: Traffic) -> None:
    page = context.new_page()
    page.goto(f"{site.url}/vite.html")
    page.evaluate("track('optOut')")
    page.evaluate("track('while-out')")
    page.reload()  # the choice is remembered
    page.evaluate("track('still-out')")
    pump(page, 2)
    sent = {e["type"] for e in traffic.events()}
    assert not sent & {"while-out", "still-out"}
    page.evaluate("track('optIn'); track('back-in')")
    pump(page, 2)
    assert "back-in" in {e["type"] for e in traffic.events()}


def test_bad_commands_warn_and_never_throw_into_the_page(context: Any, site: Site, traffic: Traffic) -> None:
    page = context.new_page()
    warnings: list[str] = []
    errors: list[str] = []
    page.on("console", lambda m: warnings.append(m.text) if m.type == "warning" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{site.url}/vite.html")
    anonymous_id(page)
    page.evaluate(
        "track(42); track('custom', 'not-an-object'); track('config', 'OTHER'); window.dataLayer.push({event: 'gtm.js'})"
    )
    pump(page, 1.5)
    assert len(warnings) == 3
    assert errors == []
    assert "custom" not in {e["type"] for e in traffic.events()}


def test_identify_rides_on_later_events_and_the_landing_campaign_and_referrer_belong_to_the_session(
    context: Any, site: Site, db: Any, traffic: Traffic
) -> None:
    page = context.new_page()
    page.goto(f"{site.url}/spa.html?utm_source=news&utm_campaign=fall", referer="https://www.google.com/search")
    visitor = anonymous_id(page)
    page.evaluate("track('identify', 'user-7')")
    page.evaluate("history.pushState({}, '', '/spa/next')")  # the URL loses its campaign
    wait_stored(db, page, visitor, 2)  # (a beacon on the way out would miss this test's routing)
    page.goto(f"{site.url}/spa.html?p=2")  # a second page load: its referrer is the site itself
    wait_stored(db, page, visitor, 3)
    pump(page, 1.5)
    later = [e for e in traffic.events() if e["context"]["url"].endswith("/spa/next")]
    assert later
    assert later[0]["context"]["user_id"] == "user-7"
    first = traffic.events()[0]
    assert first["event_id"] != later[0]["event_id"]
    assert {e["context"]["session_id"] for e in traffic.events()} == {first["context"]["session_id"]}
    sessions = db.query(
        "SELECT referrer_domain, utm_source, utm_campaign, pageviews FROM sessions WHERE visitor_id = {v:String}",
        parameters={"v": visitor},
    ).result_rows
    assert sessions == [("google.com", "news", "fall", 3)]


def test_the_demo_site_served_by_dev_produces_rows_for_each_kind_of_event(
    context: Any, stack: DevStack, db: Any
) -> None:
    page = context.new_page()
    page.goto(f"http://127.0.0.1:{stack.tracker_port}/demo/")
    visitor = anonymous_id(page)
    page.click("text=Cart (SPA route)")
    page.click("#custom")
    page.click("#crash")
    rows = settled(db, page, visitor, 6)
    kinds = sorted(r[0] for r in rows)
    assert kinds == ["addToCart", "click", "click", "click", "error", "pageView", "pageView"]
    assert "/demo/app/cart" in {r[1] for r in rows if r[0] == "pageView"}


CONFIG_PAGE = "/options.html?src=http://localhost:8080/tracker.config.js"


def test_remote_config_is_fetched_once_per_session_and_can_disable_tracking(
    context: Any, traffic: Traffic, site: Site
) -> None:
    config_calls: list[str] = []

    def remote(route: Any) -> None:
        config_calls.append(route.request.url)
        route.fulfill(
            status=200,
            body='{"enabled": false}',
            headers={"Content-Type": "application/json", "Access-Control-Allow-Origin": "*"},
        )

    context.route("http://localhost:8000/v1/config/**", remote)
    page = context.new_page()
    page.goto(site.url + CONFIG_PAGE)
    pump(page, 1)
    page.evaluate("track('after-remote-config')")
    page.reload()
    page.evaluate("track('after-reload')")
    pump(page, 2)
    assert config_calls == ["http://localhost:8000/v1/config/YOUR_API_KEY"]  # cached in sessionStorage
    assert not {"after-remote-config", "after-reload"} & {e["type"] for e in traffic.events()}


def test_remote_config_can_switch_click_tracking_off(context: Any, traffic: Traffic, site: Site) -> None:
    context.route(
        "http://localhost:8000/v1/config/**",
        lambda route: route.fulfill(
            status=200, body='{"enabled": true, "autoTrackClicks": false}', headers={"Access-Control-Allow-Origin": "*"}
        ),
    )
    page = context.new_page()
    page.goto(site.url + CONFIG_PAGE)
    pump(page, 0.5)
    page.click("#go")
    page.evaluate("track('still-custom')")
    pump(page, 2)
    sent = [e["type"] for e in traffic.events()]
    assert "still-custom" in sent
    assert "click" not in sent


def test_cors_echoes_only_a_projects_allowed_origins(browser: Any, stack: DevStack, site: Site, db: Any) -> None:
    import urllib.request

    from chalicelib import runtime
    from chalicelib.projects import new_project

    ours = new_project("Ours", allowed_origins=[site.url])
    theirs = new_project("Theirs", allowed_origins=["https://shop.example"])
    for project in (ours, theirs):
        runtime.projects().put(project)
    # No request routing in this context: the browser enforces CORS for real.
    ctx = browser.new_context()
    src = f"http://127.0.0.1:{stack.tracker_port}/tracker.js"
    try:
        page = ctx.new_page()
        page.goto(f"{site.url}/options.html?src={src}&endpoint={stack.api_url}&key={ours.api_keys[0]}")
        visitor = anonymous_id(page)
        wait_stored(db, page, visitor, 1)
        send = """async ([url, key, type]) => {
            try {
              const r = await fetch(url + '/v1/collect', {method: 'POST', headers: {'Content-Type': type},
                body: JSON.stringify({api_key: key, events: [{event_id: crypto.randomUUID(), type: 'x', ts: Date.now()}]})});
              return r.status;  // readable at all: CORS let this origin through
            } catch (e) { return 'blocked'; }
        }"""
        assert page.evaluate(send, [stack.api_url, ours.api_keys[0], "application/json"]) == 202  # needs a preflight
        assert page.evaluate(send, [stack.api_url, theirs.api_keys[0], "text/plain"]) == "blocked"
        assert page.evaluate(send, [stack.api_url, theirs.api_keys[0], "application/json"]) == "blocked"
    finally:
        ctx.close()
    count = db.query(
        "SELECT count() FROM events WHERE project_id = {p:String}", parameters={"p": theirs.project_id}
    ).result_rows[0][0]
    assert count == 0

    preflight = urllib.request.Request(
        f"{stack.api_url}/v1/collect",
        method="OPTIONS",
        headers={
            "Origin": site.url,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    with urllib.request.urlopen(preflight, timeout=5) as response:
        assert response.status == 204
        assert response.headers["Access-Control-Allow-Origin"] == site.url
        assert "POST" in response.headers["Access-Control-Allow-Methods"]
        assert response.headers["Access-Control-Allow-Origin"] != "*"
