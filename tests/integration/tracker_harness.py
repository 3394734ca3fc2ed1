"""Harness for the tracker tests: the dev pipeline in-process, a site server, headless Chromium.

Pages use the seed's snippets verbatim, so they load http://localhost:8080/tracker.js
and send to the default http://localhost:8000. The browser context routes both to
this run's servers (the built dist/tracker.js and the in-process API on free ports),
so a developer's own `make dev` on those ports never collides with the tests.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from chalicelib.settings import Settings, load_settings
from tests.conftest import make_env, wait_for
from trackflow.broker import EmbeddedBroker, free_port
from trackflow.dev import TRACKER_DIST, DevOptions, DevStack
from trackflow.topics import ensure_topics

PAGES = Path(__file__).resolve().parent / "tracker_pages"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Playwright sets navigator.webdriver, which the tracker skips by default; a real
    # visitor's browser doesn't. Tests that need it on set it per context.
    "--disable-blink-features=AutomationControlled",
    # Headless Chromium says "HeadlessChrome", which the crawler list rightly calls a
    # bot (and the development project drops bots): present as the desktop browser it is.
    "--user-agent=Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36",
]
SEED_TRACKER = "http://localhost:8080/tracker.js"
SEED_API = "http://localhost:8000"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Site:
    """The test pages, served from their own origin."""

    server: ThreadingHTTPServer
    url: str

    @classmethod
    def start(cls) -> Site:
        handler = functools.partial(_QuietHandler, directory=str(PAGES))
        server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return cls(server, f"http://127.0.0.1:{server.server_address[1]}")

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_stack(settings: Settings) -> DevStack:
    # Port 0: the servers bind any free port themselves (no race with other sockets).
    # Its own consumer group: stacks of other tests on the same broker never wait on each other's rebalances.
    options = DevOptions(
        api_port=0, tracker_port=0, batching_window_s=0.05, partitions=2, group_id=f"ingest-{settings.events_topic}"
    )
    return DevStack(settings, options).start()


def stack_fixture(broker: EmbeddedBroker, data_dir: Path) -> Iterator[DevStack]:
    """A dev stack on this test module's own topics and database, stopped afterwards."""
    settings = load_settings(make_env(broker, data_dir))
    ensure_topics(settings.bootstrap_servers, {settings.events_topic: 2, settings.dlq_topic: 1})
    running = start_stack(settings)
    yield running
    running.stop()


@dataclass
class Traffic:
    """What the page sent to collect, as the browser saw it."""

    posts: list[dict[str, Any]] = field(default_factory=list)

    def events(self) -> list[dict[str, Any]]:
        return [e for body in self.posts for e in body.get("events", [])]


def wire(context: Any, api_url: str, traffic: Traffic, *, tracker_delay_s: float = 0.0) -> None:
    """Route the seed's tracker URL (and its variants) to the built files and the seed's API to this run's server."""
    import json

    def tracker(route: Any) -> None:
        if tracker_delay_s:
            time.sleep(tracker_delay_s)
        name = route.request.url.split("?")[0].rsplit("/", 1)[-1]
        path = TRACKER_DIST / name
        if not path.is_file():
            route.fulfill(status=404, body="not built")
            return
        route.fulfill(
            status=200,
            body=path.read_bytes(),
            headers={"Content-Type": "application/javascript", "Access-Control-Allow-Origin": "*"},
        )

    def api(route: Any) -> None:
        request = route.request
        if request.method == "POST" and "/collect" in request.url:
            with contextlib.suppress(ValueError):
                traffic.posts.append(json.loads(request.post_data or "{}"))
        route.continue_(url=request.url.replace(SEED_API, api_url, 1))

    context.route(SEED_TRACKER.rsplit("/", 1)[0] + "/*.js", tracker)
    context.route(SEED_API + "/**", api)


def queued(page: Any) -> int:
    """Events waiting in this origin's stored queues (every tab's)."""
    count: int = page.evaluate(
        """Object.keys(localStorage).filter((k) => k.startsWith('tf_q'))
            .reduce((n, k) => n + JSON.parse(localStorage.getItem(k)).q.length, 0)"""
    )
    return count


def stored(clickhouse: Any, anonymous_id: str) -> list[tuple[Any, ...]]:
    """(type, url_path, props) of the visitor's stored events, oldest first, each event once."""
    return list(
        clickhouse.query(
            "SELECT type, url_path, props FROM events FINAL WHERE anonymous_id = {a:String} ORDER BY timestamp, type",
            parameters={"a": anonymous_id},
        ).result_rows
    )


def pump(page: Any, seconds: float) -> None:
    """Let time pass *inside* Playwright: its sync API only serves routes while called."""
    page.wait_for_timeout(seconds * 1000)


def wait_stored(clickhouse: Any, page: Any, visitor: str, count: int, *, timeout: float = 30) -> list[tuple[Any, ...]]:
    """The visitor's rows once there are at least ``count`` of them."""
    deadline = time.monotonic() + timeout
    while True:
        rows = stored(clickhouse, visitor)
        if len(rows) >= count:
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(rows)} of {count} events stored within {timeout} s: {rows}")
        pump(page, 0.2)


def settled(clickhouse: Any, page: Any, visitor: str, count: int, *, timeout: float = 30) -> list[tuple[Any, ...]]:
    """The visitor's rows once ``count`` are stored and 1.5 s more have passed: a doubled send would show by then."""
    wait_stored(clickhouse, page, visitor, count, timeout=timeout)
    pump(page, 1.5)
    return stored(clickhouse, visitor)


def anonymous_id(page: Any) -> str:
    value: str = wait_for(lambda: page.evaluate("localStorage.getItem('tf_aid')"), timeout=10)
    return value


def browser_fixture() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
