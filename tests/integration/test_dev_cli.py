"""`trackflow dev` as a user runs it: a real process, a curl-like POST, the row, a clean Ctrl-C."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.conftest import wait_for
from trackflow.broker import free_port, port_open

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "CLICKHOUSE_", "TRACKFLOW_"))}
    env["TRACKFLOW_DATA_DIR"] = str(data_dir)
    return env


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trackflow.cli", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def _lines(proc: subprocess.Popen[str]) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _wait_line(lines: queue.Queue[str], text: str, timeout: float) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        seen.append(line)
        if text in line:
            return seen
    raise AssertionError(f"{text!r} not printed within {timeout} s; got:\n{''.join(seen)}")


def _start_dev(
    env: dict[str, str], *, api_port: int, broker_port: int
) -> tuple[subprocess.Popen[str], queue.Queue[str]]:
    args = ["dev", "--port", str(api_port), "--broker-port", str(broker_port), "--tracker-port", str(free_port())]
    proc = subprocess.Popen(
        [sys.executable, "-m", "trackflow.cli", *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return proc, _lines(proc)


def test_dev_runs_the_pipeline_shows_the_row_via_sql_and_stops_everything_on_ctrl_c(tmp_path: Path) -> None:
    api_port, broker_port = free_port(), free_port()
    env = _env(tmp_path)
    proc, lines = _start_dev(env, api_port=api_port, broker_port=broker_port)
    try:
        banner = "".join(_wait_line(lines, "SELECT timestamp", timeout=90))
        assert f"http://127.0.0.1:{api_port}/v1/collect" in banner
        assert "curl" in banner

        event_id = str(uuid.uuid4())
        body = {
            "api_key": "YOUR_API_KEY",
            "events": [
                {
                    "event_id": event_id,
                    "type": "pageView",
                    "ts": int(time.time() * 1000),
                    "context": {"url": "http://localhost/hello?utm_source=readme", "anonymous_id": "visitor-1"},
                }
            ],
        }
        request = urllib.request.Request(
            f"http://127.0.0.1:{api_port}/v1/collect",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "text/plain"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 202
            assert json.loads(response.read())["accepted"] == 1
        accepted_at = time.monotonic()

        def row() -> list[dict[str, object]]:
            result = _cli(
                "sql",
                f"SELECT toString(event_id) AS id, utm_source FROM events FINAL WHERE event_id = '{event_id}'",
                "--format",
                "json",
                env=env,
            )
            assert result.returncode == 0, result.stderr
            return json.loads(result.stdout)  # type: ignore[no-any-return]

        rows = wait_for(row, timeout=15, interval=0.2)
        assert rows == [{"id": event_id, "utm_source": "readme"}]
        assert time.monotonic() - accepted_at < 10  # the README promises ~2 s; leave room for a loaded CI machine

        readonly = _cli("sql", "DROP TABLE events", env=env)
        assert readonly.returncode != 0
        assert "only select" in (readonly.stderr + readonly.stdout).lower()

        # Generated traffic through the pipeline, then seen by the stats API and the dashboard page.
        load_env = env | {"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{broker_port}"}
        loaded = _cli("load", "--events", "400", "--days", "1", env=load_env)  # its default demo projects
        assert loaded.returncode == 0, loaded.stderr
        assert "400 events" in loaded.stdout
        tokens = dict(re.findall(r"created project '([\w-]+)' .*: (tf_rt_\S+)", loaded.stdout))
        assert set(tokens) == {"shop-demo", "blog-demo"}, loaded.stdout
        # One store answers the CLI and the dashboard: the demo projects are real projects.
        listed = _cli("projects", "list", env=env).stdout
        listed_ids = [line.split()[0] for line in listed.splitlines()[1:]]
        assert listed_ids[0] == "development" and sorted(listed_ids[1:]) == ["blog-demo", "shop-demo"], listed
        with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/v1/stats/projects", timeout=10) as r:
            offered = [p["project_id"] for p in json.loads(r.read())["projects"]]
        assert offered == listed_ids
        with pytest.raises(urllib.error.HTTPError) as unknown:
            urllib.request.urlopen(f"http://127.0.0.1:{api_port}/v1/stats/overview?project=no-such", timeout=10)
        assert unknown.value.code == 404 and json.loads(unknown.value.read())["error"]["code"] == "unknown_project"
        demo = urllib.request.Request(
            f"http://127.0.0.1:{api_port}/v1/stats/overview?project=shop-demo&period=24h",
            headers={"Authorization": f"Bearer {tokens['shop-demo']}"},
        )
        assert wait_for(
            lambda: json.loads(urllib.request.urlopen(demo, timeout=10).read())["metrics"]["pageviews"]["value"] > 0,
            timeout=30,
            interval=0.5,
        )

        def stored() -> int:
            result = _cli("sql", "SELECT count() AS n FROM events FINAL", "--format", "json", env=env)
            return int(json.loads(result.stdout)[0]["n"]) if result.returncode == 0 else 0

        # The read-only queries above must not have made the engine read-only for ingest.
        assert wait_for(lambda: stored() >= 401, timeout=30, interval=0.5)
        with urllib.request.urlopen(
            f"http://127.0.0.1:{api_port}/v1/stats/overview?period=24h&bots=include", timeout=10
        ) as r:
            assert json.loads(r.read())["metrics"]["pageviews"]["value"] > 0
        with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/", timeout=10) as r:
            assert "<title>TrackFlow</title>" in r.read().decode()

        locked = _cli("load", "--events", "10", "--target", "table", env=env)
        assert locked.returncode != 0
        assert "trackflow dev" in locked.stderr or "another process" in locked.stderr.lower()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0
    for port in (api_port, broker_port):
        assert not port_open("127.0.0.1", port), f"something still listens on {port} after Ctrl-C"
    assert not (tmp_path / "dev.json").exists()


def test_a_second_process_on_the_same_data_dir_is_told_why_it_cannot_start(tmp_path: Path) -> None:
    api_port, broker_port = free_port(), free_port()
    env = _env(tmp_path)
    proc, lines = _start_dev(env, api_port=api_port, broker_port=broker_port)
    try:
        _wait_line(lines, "Ctrl-C stops everything", timeout=90)
        # `trackflow migrate` opens chDB directly: the running dev server holds it.
        result = _cli("migrate", env=env)
        assert result.returncode != 0
        assert "held by another process" in result.stderr
        assert "TRACKFLOW_DATA_DIR" in result.stderr
        # `trackflow doctor` reads it through the dev server, as `trackflow sql` does.
        doctor = _cli("doctor", env=env | {"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{broker_port}"})
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        assert "ok    clickhouse" in doctor.stdout and "through the running `trackflow dev`" in doctor.stdout
        assert "ok    migrations" in doctor.stdout
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


@pytest.mark.parametrize(
    ("option", "what"),
    [("--port", "the API and dashboard"), ("--tracker-port", "tracker.js"), ("--broker-port", "the Kafka broker")],
)
def test_dev_names_a_busy_port_its_holder_and_the_option_before_starting_anything(
    tmp_path: Path, option: str, what: str
) -> None:
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        ports = {"--port": str(free_port()), "--tracker-port": str(free_port()), "--broker-port": str(free_port())}
        ports[option] = str(port)
        started = time.monotonic()
        result = _cli("dev", *[item for pair in ports.items() for item in pair], env=_env(tmp_path))
        took = time.monotonic() - started
    assert result.returncode != 0
    said = result.stderr
    assert f"port {port} ({what}" in said and f"is in use by pid {os.getpid()} (" in said, said
    assert f"use {option}" in said and "or stop it" in said
    if option == "--broker-port":
        assert "KAFKA_BOOTSTRAP_SERVERS" in said
    assert "ERROR" not in said and "Errno" not in said  # no broker started, no Kafka client complaining
    assert took < 15, took  # before anything starts (the interpreter and imports take a few seconds)
    assert not (tmp_path / "broker.log").exists()


def test_ctrl_c_right_after_202s_loses_nothing_the_broker_acknowledged(tmp_path: Path) -> None:
    """The embedded broker keeps nothing: on Ctrl-C dev drains it before it stops."""
    api_port, broker_port = free_port(), free_port()
    env = _env(tmp_path) | {"TRACKFLOW_ROLLUP_INTERVAL": "3600"}
    proc, lines = _start_dev(env, api_port=api_port, broker_port=broker_port)
    accepted = 0
    try:
        _wait_line(lines, "Ctrl-C stops everything", timeout=90)
        now = int(time.time() * 1000)
        for n in range(30):
            events = [
                {"event_id": str(uuid.uuid4()), "type": "pageView", "ts": now, "context": {"anonymous_id": f"v{n}"}}
                for _ in range(10)
            ]
            request = urllib.request.Request(
                f"http://127.0.0.1:{api_port}/v1/collect",
                data=json.dumps({"api_key": "YOUR_API_KEY", "events": events}).encode(),
                headers={"Content-Type": "text/plain"},
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                accepted += json.loads(response.read())["accepted"]
    finally:
        proc.send_signal(signal.SIGINT)  # at once: most of it is still in the broker
        output = _wait_line(lines, "stopped;", timeout=60)
        proc.wait(timeout=30)
    assert accepted == 300
    assert proc.returncode == 0
    assert "still held" not in "".join(output)
    # Nothing runs now: `trackflow sql` opens the engine itself.
    result = _cli("sql", "SELECT count() AS n FROM events FINAL", "--format", "json", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [{"n": 300}]
