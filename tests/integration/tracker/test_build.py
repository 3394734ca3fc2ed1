"""The tracker build: size budget, the built file is what is served, the seed's http-server command."""

from __future__ import annotations

import gzip
import os
import re
import shutil
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import wait_for
from trackflow.broker import free_port
from trackflow.dev import TRACKER_DIST

pytestmark = pytest.mark.integration

TRACKER = TRACKER_DIST.parent
GZIP_BUDGET = 2400


EXTRAS = ["config", "hash", "links", "tagged", "engagement"]
ROW = re.compile(r"^(\S+\.m?js)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\S+)$", re.MULTILINE)


def test_build_prints_every_files_sizes_and_the_core_stays_inside_its_gzip_budget() -> None:
    result = subprocess.run(["node", "build.mjs"], cwd=TRACKER, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {m.group(1): [int(m.group(i)) for i in (2, 3, 4)] for m in ROW.finditer(result.stdout)}
    built = {p.name for p in TRACKER_DIST.iterdir()}
    assert set(rows) == built
    # Every combination of the extras, named in their order, plus the two ES modules.
    assert len(built) == 2 ** len(EXTRAS) + 2
    assert "tracker.config.hash.links.tagged.engagement.js" in built
    for name, (raw, gz, _) in rows.items():
        code = (TRACKER_DIST / name).read_bytes()
        assert raw == len(code), name
        assert abs(len(gzip.compress(code, 9)) - gz) < 50, name  # the build's figure is the real size
    assert rows["tracker.js"][1] <= GZIP_BUDGET
    code = (TRACKER_DIST / "tracker.js").read_bytes()
    assert b"\n" not in code.strip()  # minified: what the browser tests load is this file
    # Off, an extra's code is not in the file at all.
    assert b"data-track-event" not in code and b"/v1/config/" not in code and b"engaged_ms" not in code
    assert b"data-track-event" in (TRACKER_DIST / "tracker.tagged.js").read_bytes()


def test_build_fails_when_the_core_is_over_budget(tmp_path: Path) -> None:
    copy = tmp_path / "tracker"
    shutil.copytree(TRACKER, copy, ignore=shutil.ignore_patterns("node_modules", "dist"))
    (copy / "node_modules").symlink_to(TRACKER / "node_modules")
    source = copy / "src" / "tracker.js"
    # Incompressible filler pushes it over 2,400 B gzipped.
    filler = "".join(f"w.x{i}='{i * 7919 % 100003:x}{i * 104729 % 65521:x}';" for i in range(400))
    source.write_text(source.read_text().replace("dl.tf = 1;", "dl.tf = 1;" + filler, 1))
    result = subprocess.run(["node", "build.mjs"], cwd=copy, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert re.search(r"tracker\.js is \d+ B gzipped, over the 2400 B budget", result.stderr)


def test_the_seeds_http_server_command_serves_the_script_with_cors() -> None:
    port = free_port()
    server = subprocess.Popen(
        ["npx", "--no-install", "http-server", "./dist", "--cors", "-p", str(port), "-a", "127.0.0.1", "-s"],
        cwd=TRACKER,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # npx runs http-server as a child: stop the whole group
    )
    try:

        def fetch() -> tuple[bytes, str | None] | None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/tracker.js", timeout=2) as response:
                    return response.read(), response.headers.get("Access-Control-Allow-Origin")
            except OSError:
                return None

        body, cors = wait_for(fetch, timeout=30, interval=0.2)
        assert body == (TRACKER_DIST / "tracker.js").read_bytes()
        assert cors == "*"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(10)
