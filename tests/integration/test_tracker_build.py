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
GZIP_BUDGET = 2500


def test_build_prints_sizes_and_stays_inside_the_gzip_budget() -> None:
    result = subprocess.run(["node", "build.mjs"], cwd=TRACKER, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    match = re.search(r"raw (\d+) B\s+gzip (\d+) B\s+brotli (\d+) B", result.stdout)
    assert match, result.stdout
    code = (TRACKER_DIST / "tracker.js").read_bytes()
    assert int(match.group(1)) == len(code)
    # The build's own figure (Node's zlib, level 9) is the one the budget is about.
    assert int(match.group(2)) <= GZIP_BUDGET
    assert abs(len(gzip.compress(code, 9)) - int(match.group(2))) < 50  # and it is the real size
    assert b"\n" not in code.strip()  # minified: what the browser tests load is this file


def test_build_fails_over_budget(tmp_path: Path) -> None:
    copy = tmp_path / "tracker"
    shutil.copytree(TRACKER, copy, ignore=shutil.ignore_patterns("node_modules", "dist"))
    (copy / "node_modules").symlink_to(TRACKER / "node_modules")
    source = copy / "src" / "tracker.js"
    # Incompressible filler pushes it over 2,500 B gzipped.
    filler = "".join(f"w.x{i}='{i * 7919 % 100003:x}{i * 104729 % 65521:x}';" for i in range(400))
    source.write_text(source.read_text().replace("dl.tf = 1;", "dl.tf = 1;" + filler, 1))
    result = subprocess.run(["node", "build.mjs"], cwd=copy, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "over the 2500 B budget" in result.stderr


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
