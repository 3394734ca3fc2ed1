"""README.md as a newcomer follows it: every shell block run as pasted, on the ports it names.

Each ```bash block of the README is looked up in :data:`HOW`, by its first
line: run as it is (its ``# {...}`` comments are the output it promises),
started like a server in a terminal of its own and stopped with Ctrl-C (SIGINT
to its process group, as a terminal sends it), or left out for a stated
reason (Docker, an AWS account, or being this very suite). A block the table
does not know fails the test, so a new README block gets run too.

The commands use the README's own ports (8000, 8080, 9092, 9093), so the test
needs them free: under CI a busy one fails it, elsewhere (a `make dev` of
yours running) it is skipped saying which. Data goes to a temporary
``TRACKFLOW_DATA_DIR``, which the commands read like any user setting.

The browser part opens the README's snippet in Chromium as a person's browser
(``navigator.webdriver`` unset), then reads the dashboard.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import pytest

from tests.integration.tracker_harness import CHROMIUM, CHROMIUM_ARGS
from trackflow.broker import free_port, port_open
from trackflow.ports import holder, is_free

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
ARTIFACTS = ROOT / "test-artifacts"
PORTS = (8000, 8080, 9092, 9093)
# How a command stopped by Ctrl-C may end: itself with 0, or `make` (which gets the SIGINT too)
# after its child stopped cleanly, with 130 or by the signal.
STOPPED = (0, 130, -signal.SIGINT, 2)
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


def blocks(language: str) -> list[str]:
    return [body for lang, body in BLOCK.findall(README.read_text()) if lang == language]


# How each bash block is run, by its first line: "run" as pasted, a named scenario, or a reason it is not.
HOW: dict[str, str] = {
    "make dev": "the scenario: make dev, then the blocks that need it (`make test` is this suite)",
    "curl -s -X POST http://127.0.0.1:8000/v1/collect -H 'Content-Type: text/plain' \\": "run",
    'curl -s -X POST http://127.0.0.1:8000/v1/collect -H \'Content-Type: text/plain\' -d \'{"api_key":"k"': "run",
    ".venv/bin/trackflow load --events 50000 --days 30": "run",
    "curl -s 'http://127.0.0.1:8000/v1/stats/overview?period=30d'": "run",
    ".venv/bin/trackflow projects create": "run, with PROJECT_ID replaced by the id `create` printed",
    "make kafka": "the scenario: make kafka, then make dev on it",
    "make up": "skipped: needs Docker, which this machine kind does not have (`make up` says so and what to use)",
    ".venv/bin/trackflow broker": "the scenario: three terminals, then collect posts and `trackflow sql`",
    "export AWS_DEFAULT_REGION=eu-west-1": "skipped: needs an AWS account; tests/integration/test_deploy.py runs "
    "`trackflow deploy` against moto",
    "make bench": "skipped: the benchmarks and fault runs take minutes each; `make lint` is part of `make test`",
}


def how(block: str) -> str:
    first = block.splitlines()[0]
    found = [value for key, value in HOW.items() if first.startswith(key)]
    assert len(found) == 1, f"README block starting {first!r} is not in test_readme.HOW: say how to run it"
    return found[0]


@dataclass
class Terminal:
    """One command in a terminal of its own: its output collected, Ctrl-C to its process group."""

    command: str
    env: dict[str, str]
    lines: list[str] = field(default_factory=list)
    proc: subprocess.Popen[str] | None = None

    def start(self) -> Terminal:
        self.proc = subprocess.Popen(
            ["bash", "-c", self.command],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            preexec_fn=_as_a_terminal_starts_it,
        )
        Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not any(text in line for line in self.lines):
            assert self.proc is not None
            if self.proc.poll() is not None and not any(text in line for line in self.lines):
                time.sleep(0.2)  # the reader may still be behind
                if not any(text in line for line in self.lines):
                    raise AssertionError(f"{self.command!r} ended before saying {text!r}:\n" + self.output())
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.command!r} did not say {text!r} in {timeout_s} s:\n" + self.output())
            time.sleep(0.2)

    def ctrl_c(self, timeout_s: float = 45) -> int:
        """Ctrl-C, as a terminal sends it; the exit code once every process of the group is gone."""
        assert self.proc is not None
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
        try:
            code = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.command!r} still runs {timeout_s} s after Ctrl-C:\n{self.output()}") from None
        deadline = time.monotonic() + 10
        while _group_alive(self.proc.pid):
            assert time.monotonic() < deadline, f"{self.command!r} left processes behind after Ctrl-C"
            time.sleep(0.2)
        return code

    def kill(self) -> None:
        if self.proc is not None and _group_alive(self.proc.pid):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def output(self) -> str:
        return "\n".join(self.lines[-60:])


def _as_a_terminal_starts_it() -> None:
    """Ctrl-C and Ctrl-\\ at their defaults, as in a terminal. A test run started in the background
    (`make test &`, nohup) ignores both, and every child would inherit that: `chalice local`, which
    sets no handler of its own, then outlived Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def paste(block: str, env: dict[str, str], *, timeout_s: float = 180) -> str:
    """Run a block as pasted into bash; its output (stdout and stderr)."""
    result = subprocess.run(
        ["bash", "-e", "-c", block], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s
    )
    assert result.returncode == 0, f"{block}\nexited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def send_block() -> str:
    """The README's "Send an event" block: the curl (two lines), then `trackflow sql`."""
    return next(b for b in blocks("bash") if b.startswith("curl -s -X POST") and "YOUR_API_KEY" in b)


def promised(block: str) -> list[str]:
    """The outputs a block promises in its comments: ``# {...}`` lines."""
    return [line[2:] for line in block.splitlines() if line.startswith("# {")]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    busy = [f"{port} ({holder(port) or 'unknown holder'})" for port in PORTS if not is_free("127.0.0.1", port)]
    if busy:
        message = f"the README's ports are busy: {', '.join(busy)}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message + "; stop what holds them (a `make dev`?) to run this test")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "CLICKHOUSE_", "TRACKFLOW_", "AWS_"))}
    return clean | {"TRACKFLOW_DATA_DIR": str(tmp_path_factory.mktemp("readme-data"))}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # As a person's browser: navigator.webdriver unset (CHROMIUM_ARGS), a desktop user agent.
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def _serve_snippet_page(directory: Path) -> tuple[ThreadingHTTPServer, str]:
    (snippet,) = blocks("html")
    page = f"<!doctype html><html><head><title>My page</title>\n{snippet}</head><body><h1>Mine</h1></body></html>"
    (directory / "index.html").write_text(page)

    class Quiet(SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(directory), **kwargs)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Quiet)
    Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def _dashboard_number(page: Any, metric: str, check: Any, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    while True:
        text = page.locator(f"[data-metric={metric}]").first.inner_text().replace(",", "").strip() or "0"
        if text.isdigit() and check(int(text)):
            return int(text)
        assert time.monotonic() < deadline, f"the dashboard's {metric} still reads {text!r}"
        page.wait_for_timeout(250)


def test_every_readme_block_is_known_to_this_test() -> None:
    for block in blocks("bash"):
        how(block)


def test_make_dev_then_the_readme_blocks_and_snippet_as_a_newcomer_pastes_them(
    env: dict[str, str], browser: Any, tmp_path: Path
) -> None:
    dev = Terminal("make dev", env).start()
    try:
        dev.wait_for("Ctrl-C stops everything", timeout_s=180)

        # The dashboard open and empty, as a newcomer has it while trying the README.
        context = browser.new_context(viewport={"width": 1280, "height": 1600})
        dashboard = context.new_page()
        dashboard.goto("http://localhost:8000/")
        dashboard.wait_for_selector("[data-metric=pageviews]")
        assert _dashboard_number(dashboard, "pageviews", lambda n: n == 0, timeout_s=5) == 0

        # "Send an event and see the row": the answer it promises, then the row.
        send = send_block()
        sent_at = time.monotonic()
        said = paste(send, env)
        for line in promised(send):
            assert line in said, said
        deadline = time.monotonic() + 10
        while "/hello" not in said:
            assert time.monotonic() < deadline, said
            said = paste(send.splitlines()[-1], env)  # the sql line again, as a person would
        assert "pageView" in said and "readme" in said

        # ... and on the dashboard, without touching anything: curl is a bot, the dev project counts it,
        # and an empty dashboard refreshes its figures when the live panel (every 5 s) sees an event,
        # well before its 15 s refresh.
        _dashboard_number(dashboard, "pageviews", lambda n: n >= 1, timeout_s=12)
        curl_to_dashboard_s = time.monotonic() - sent_at
        assert dashboard.locator("#bots").is_checked()

        # Bad input: exactly the error the README shows.
        bad = next(b for b in blocks("bash") if '"api_key":"k"' in b)
        said = paste(bad, env)
        assert promised(bad) == [said.strip()], said

        # "Track a website": the snippet in a page of one's own, in a person's browser.
        server, url = _serve_snippet_page(tmp_path)
        try:
            before = _dashboard_number(dashboard, "visitors", lambda n: n >= 1, timeout_s=5)
            visit = browser.new_context()
            mine = visit.new_page()
            opened = time.monotonic()
            mine.goto(url)
            assert mine.evaluate("navigator.webdriver") is False
            mine.wait_for_timeout(1500)  # the tracker sends within a second
            visit.close()  # and the beacon on the way out
            dashboard.reload()
            _dashboard_number(dashboard, "visitors", lambda n: n > before, timeout_s=30)
            browser_to_dashboard_s = time.monotonic() - opened
        finally:
            server.shutdown()
        ARTIFACTS.mkdir(exist_ok=True)
        dashboard.screenshot(path=str(ARTIFACTS / "readme-dashboard.png"), full_page=True)

        # A month of traffic, then the stats API's examples: each answers JSON without an error.
        (load,) = [b for b in blocks("bash") if b.startswith(".venv/bin/trackflow load")]
        loaded = paste(load, env)
        assert "50,000 events in" in loaded and "created project 'shop-demo'" in loaded, loaded
        stats = next(b for b in blocks("bash") if b.startswith("curl -s 'http://127.0.0.1:8000/v1/stats/"))
        for line in stats.splitlines():
            body = json.loads(paste(line, env))
            assert "error" not in body, (line, body)
        _dashboard_number(dashboard, "visitors", lambda n: n > 100, timeout_s=60)  # the load reached it
        context.close()

        # Projects and API keys, PROJECT_ID being the id `create` printed.
        projects = next(b for b in blocks("bash") if b.startswith(".venv/bin/trackflow projects create"))
        first, rest = projects.split("\n", 1)
        created = paste(first, env)
        project_id = re.search(r"^\s+id\s+(\w+)$", created, re.M)
        assert project_id, created
        said = paste(rest.replace("PROJECT_ID", project_id.group(1)), env)
        assert "My shop" in said and "new API key" in said and "read token" in said, said

        print(
            f"\nREADME timings: curl to dashboard {curl_to_dashboard_s:.1f} s, "
            f"snippet page to dashboard {browser_to_dashboard_s:.1f} s"
        )
    finally:
        dev_exit = dev.ctrl_c()
        dev.kill()
    assert dev_exit in STOPPED, dev.output()
    assert "stopped;" in dev.output() and "Traceback" not in dev.output(), dev.output()
    for port in (8000, 8080, 9092):
        assert not port_open("127.0.0.1", port), f"port {port} still open after Ctrl-C"


def test_apache_kafka_block_make_kafka_then_make_dev_on_it(env: dict[str, str]) -> None:
    (block,) = [b for b in blocks("bash") if b.startswith("make kafka")]
    kafka_line, dev_line = (line.split("#")[0].strip() for line in block.splitlines())
    kafka = Terminal(kafka_line, env).start()
    dev = None
    try:
        kafka.wait_for("Apache Kafka listening on 127.0.0.1:9092", timeout_s=240)
        dev = Terminal(dev_line, env).start()  # "in another terminal"
        dev.wait_for("Ctrl-C stops everything", timeout_s=120)
        send = send_block()
        said = paste(send.splitlines()[0] + "\n" + send.splitlines()[1], env)
        assert '{"accepted":1,"rejected":[]}' in said, said
        # A fresh Apache Kafka creates __consumer_offsets and balances the group first: seconds, not one.
        deadline = time.monotonic() + 90
        while "/hello" not in paste(send.splitlines()[-1], env):
            assert time.monotonic() < deadline, dev.output() + "\n---- kafka ----\n" + kafka.output()
            time.sleep(0.5)
    finally:
        try:
            codes = [dev.ctrl_c() if dev else 0, kafka.ctrl_c(timeout_s=60)]
        finally:
            for terminal in (dev, kafka):
                if terminal is not None:
                    terminal.kill()
    assert all(code in STOPPED for code in codes), (codes, dev.output() if dev else "", kafka.output())
    assert "Traceback" not in kafka.output() and dev is not None and "stopped;" in dev.output()
    for port in (8000, 9092, 9093):
        assert not port_open("127.0.0.1", port), f"port {port} still open after Ctrl-C"


def test_the_chalice_way_three_terminals_serve_every_request_and_stop_on_ctrl_c(env: dict[str, str]) -> None:
    (block,) = [b for b in blocks("bash") if b.startswith(".venv/bin/trackflow broker")]
    commands = [line.split("  #")[0].strip() for line in block.splitlines()]
    assert "--no-autoreload" in commands[2]
    terminals = [Terminal(command, env) for command in commands]
    try:
        terminals[0].start().wait_for("broker listening on", timeout_s=60)
        terminals[1].start().wait_for("consuming", timeout_s=90)
        terminals[2].start()
        deadline = time.monotonic() + 60
        while not port_open("127.0.0.1", 8000):
            assert time.monotonic() < deadline, terminals[2].output()
            time.sleep(0.2)
        send = send_block()
        curl = "\n".join(send.splitlines()[:2])
        answers = [paste(curl, env).strip() for _ in range(10)]
        assert answers == ['{"accepted":1,"rejected":[]}'] * 10, answers
        count_line = '.venv/bin/trackflow sql "SELECT count() FROM events FINAL"'
        assert count_line.split(" ", 1)[1] in README.read_text()  # the README's own words
        deadline = time.monotonic() + 20
        while True:
            said = paste(count_line + " --format json", env)
            if json.loads(said)[0]["count()"] >= 10:
                break
            assert time.monotonic() < deadline, said
            time.sleep(0.5)
        assert not any("Restarting" in line for line in terminals[2].lines), terminals[2].output()
    finally:
        try:
            codes = [terminal.ctrl_c() if terminal.proc else 0 for terminal in reversed(terminals)]
        finally:  # a terminal that ignores Ctrl-C must not leave the others running for the tests after
            for terminal in terminals:
                terminal.kill()
    chalice, trigger, broker = codes
    assert trigger in STOPPED and broker in STOPPED, (codes, [t.output() for t in terminals])
    # click's way with Ctrl-C, which `chalice local` keeps: "Aborted!" and 1.
    assert chalice in STOPPED or (chalice == 1 and terminals[2].lines[-1] == "Aborted!"), terminals[2].output()
    assert not any("Traceback" in terminal.output() for terminal in terminals), [t.output() for t in terminals]
    for port in (8000, 9092):
        assert not port_open("127.0.0.1", port), f"port {port} still open after Ctrl-C"
