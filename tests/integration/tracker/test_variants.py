"""The tracker's extras, each from its own built file, in Chromium against the real pipeline;
and the npm package's ES module, bundled the way a site's bundler would."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.integration.tracker_harness import Site, Traffic, anonymous_id, pump, settled, wait_stored
from trackflow.dev import TRACKER_DIST, DevStack

pytestmark = pytest.mark.integration

TRACKER = TRACKER_DIST.parent


def features(site: Site, variant: str, query: str = "") -> str:
    return f"{site.url}/features.html?src=http://localhost:8080/{variant}{query}"


def props_of(rows: list[tuple[Any, ...]], type_: str) -> list[dict[str, Any]]:
    return [json.loads(r[2]) for r in rows if r[0] == type_]


def test_links_sends_outbound_link_and_file_download_clicks(context: Any, site: Site, db: Any) -> None:
    page = context.new_page()
    page.goto(features(site, "tracker.links.js"))
    visitor = anonymous_id(page)
    for link in ("#out", "#pdf", "#zip", "#inside"):
        page.click(link)
    rows = settled(db, page, visitor, 8)  # page view, 4 clicks, 1 outbound, 2 downloads
    assert [p["url"] for p in props_of(rows, "outbound")] == ["https://elsewhere.example/article?x=1"]
    assert sorted(p["url"].rsplit("/", 1)[1] for p in props_of(rows, "download")) == ["data", "report.pdf"]
    assert len(props_of(rows, "click")) == 4  # the plain clicks are still there


def test_tagged_sends_the_event_named_by_data_track_event_with_its_data_track_props(
    context: Any, site: Site, db: Any
) -> None:
    page = context.new_page()
    page.goto(features(site, "tracker.tagged.js"))
    visitor = anonymous_id(page)
    page.click("#tagged")
    rows = wait_stored(db, page, visitor, 3)
    assert props_of(rows, "signup") == [{"plan": "pro", "seats": "3"}]


def test_hash_counts_each_route_fragment_as_a_page_and_the_server_keeps_it_in_the_path(
    context: Any, site: Site, db: Any
) -> None:
    page = context.new_page()
    page.goto(features(site, "tracker.hash.js"))
    visitor = anonymous_id(page)
    page.evaluate("location.hash = '#/cart'")
    pump(page, 0.3)
    page.click("#route")  # <a href="#/checkout">
    rows = settled(db, page, visitor, 4)  # three page views and the click
    paths = [r[1] for r in rows if r[0] == "pageView"]
    assert paths == ["/features.html", "/features.html#/cart", "/features.html#/checkout"]
    assert len(rows) == 4


def test_the_core_ignores_route_fragments(context: Any, site: Site, db: Any) -> None:
    page = context.new_page()
    page.goto(features(site, "tracker.js"))
    visitor = anonymous_id(page)
    page.evaluate("location.hash = '#/cart'")
    page.evaluate("track('after')")
    rows = settled(db, page, visitor, 2)
    assert [r[1] for r in rows] == ["/features.html", "/features.html"]
    assert len(rows) == 2


def test_engagement_reports_visible_time_and_scroll_depth_for_the_page_left(context: Any, site: Site, db: Any) -> None:
    page = context.new_page()
    page.goto(features(site, "tracker.engagement.js"))
    visitor = anonymous_id(page)
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    pump(page, 1.2)
    page.evaluate("history.pushState({}, '', '/next')")  # an SPA navigation ends the first page
    rows = wait_stored(db, page, visitor, 3)
    engagement = props_of(rows, "engagement")
    assert len(engagement) == 1
    assert engagement[0]["engaged_ms"] >= 1000
    assert engagement[0]["scroll_depth"] == 100
    paths = {r[0]: r[1] for r in rows}
    assert paths["engagement"] == "/features.html"  # counted at the page it measured


def test_config_uses_the_servers_environment_when_the_page_sets_none_and_remembers_a_failed_fetch(
    context: Any, site: Site, traffic: Traffic
) -> None:
    answers: list[str] = []

    def config(route: Any) -> None:
        answers.append(route.request.url)
        if len(answers) == 1:
            route.fulfill(
                status=200,
                body='{"enabled": true, "environment": "production"}',
                headers={"Access-Control-Allow-Origin": "*"},
            )
        else:
            route.abort("connectionrefused")

    context.route("http://localhost:8000/v1/config/**", config)
    page = context.new_page()
    page.goto(features(site, "tracker.config.js"))
    page.evaluate("track('hello')")
    pump(page, 2)
    assert {e["context"]["environment"] for e in traffic.events()} == {"production"}

    # Another tab (its own session storage): the fetch fails, is remembered, and events still flow.
    other = context.new_page()
    other.goto(features(site, "tracker.config.js"))
    other.evaluate("track('despite-no-config')")
    pump(other, 2)
    other.reload()  # the failure is remembered for the session: no second fetch
    pump(other, 1)
    assert len(answers) == 2
    sent = [e for e in traffic.events() if e["type"] == "despite-no-config"]
    assert [e["context"]["environment"] for e in sent] == ["development"]


def test_the_npm_package_packs_with_types_and_its_es_module_tracks_when_bundled(
    tmp_path: Path, context: Any, site: Site, db: Any, stack: DevStack
) -> None:
    npm = shutil.which("npm")
    assert npm, "npm is needed (Node 20)"
    packed = subprocess.run(
        [npm, "pack", "--json", "--pack-destination", str(tmp_path)],
        cwd=TRACKER,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert packed.returncode == 0, packed.stderr
    report = packed.stdout[packed.stdout.index("\n[") :]  # after the prepack build's own output
    info = json.loads(report)[0]
    files = {f["path"] for f in info["files"]}
    assert {"index.d.ts", "dist/tracker.js", "dist/trackflow.mjs", "package.json"} <= files
    assert not any(f.startswith(("src/", "node_modules/")) for f in files)

    app = tmp_path / "app"
    app.mkdir()
    (app / "package.json").write_text('{"name": "app", "version": "1.0.0", "private": true}')
    installed = subprocess.run(
        [npm, "install", "--offline", "--no-audit", "--no-fund", str(tmp_path / info["filename"])],
        cwd=app,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert installed.returncode == 0, installed.stderr
    (app / "main.js").write_text(
        "import { track } from 'trackflow-tracker';\n"
        f"track('config', 'YOUR_API_KEY', {{ endpoint: '{stack.api_url}' }});\n"
        "track('from-the-bundle', { via: 'esm' });\n"
    )
    bundled = subprocess.run(
        [
            str(TRACKER / "node_modules" / ".bin" / "esbuild"),
            "main.js",
            "--bundle",
            "--format=esm",
            "--outfile=site.js",
        ],
        cwd=app,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bundled.returncode == 0, bundled.stderr
    # Imported during server-side rendering (no window), it does nothing and throws nothing.
    ssr = subprocess.run(
        [
            "node",
            "--input-type=module",
            "-e",
            "import { track } from 'trackflow-tracker'; track('x'); console.log('ok')",
        ],
        cwd=app,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ssr.stdout.strip() == "ok", ssr.stderr

    page = context.new_page()
    page.route(
        f"{site.url}/site.js",
        lambda route: route.fulfill(path=str(app / "site.js"), headers={"Content-Type": "text/javascript"}),
    )
    page.goto(f"{site.url}/blank.html")
    page.add_script_tag(url=f"{site.url}/site.js", type="module")
    visitor = anonymous_id(page)
    rows = wait_stored(db, page, visitor, 2)
    assert props_of(rows, "from-the-bundle") == [{"via": "esm"}]
