"""The README's `chalice local` workflow: a broker, `trackflow trigger`, and `chalice local`, as three processes.

Collect and config answer; the trigger ingests (and migrates the embedded
engine it holds); `trackflow sql` reads through it; stats answer 503 naming
the fix while the engine is held elsewhere, or not migrated yet: never 500.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import new_event, wait_for
from tests.integration.test_dev_cli import _env, _lines, _wait_line
from trackflow.broker import EmbeddedBroker, free_port, port_open

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _request(url: str, body: bytes | None = None) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "text/plain"} if body else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body, headers=headers), timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


class Processes:
    """What a person starts in separate terminals, stopped by PID at the end."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self._running: list[subprocess.Popen[str]] = []

    def start(self, *command: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            list(command), cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self._running.append(process)
        return process

    def chalice_local(self) -> tuple[subprocess.Popen[str], str]:
        port = free_port()
        process = self.start(str(BIN / "chalice"), "local", "--no-autoreload", "--port", str(port))
        wait_for(lambda: port_open("127.0.0.1", port) or process.poll() is not None, timeout=60)
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        return process, f"http://127.0.0.1:{port}"

    def stop(self, process: subprocess.Popen[str]) -> None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def stop_all(self) -> None:
        for process in self._running:
            if process.poll() is None:
                self.stop(process)


@pytest.fixture
def terminals(broker: EmbeddedBroker, tmp_path: Path) -> Iterator[Processes]:
    env = _env(tmp_path / "data")
    suffix = uuid.uuid4().hex[:8]
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap_servers,
        TRACKFLOW_EVENTS_TOPIC=f"local-{suffix}",
        TRACKFLOW_DLQ_TOPIC=f"local-dlq-{suffix}",
    )
    processes = Processes(env)
    yield processes
    processes.stop_all()


def test_chalice_local_with_a_trigger_collects_and_says_what_to_do_for_stats(terminals: Processes) -> None:
    # alone on a fresh data directory: the tables are not there yet
    api, url = terminals.chalice_local()
    status, body = _request(f"{url}/v1/stats/overview")
    assert status == 503, body
    assert "trackflow migrate" in body["error"]["message"]
    terminals.stop(api)

    trigger = terminals.start(str(BIN / "trackflow"), "trigger")
    trigger_lines = _lines(trigger)
    _wait_line(trigger_lines, "consuming", timeout=90)
    api, url = terminals.chalice_local()

    event = new_event()
    status, body = _request(f"{url}/v1/collect", json.dumps({"api_key": "YOUR_API_KEY", "events": [event]}).encode())
    assert (status, body["accepted"]) == (202, 1), body
    status, body = _request(f"{url}/v1/config/YOUR_API_KEY")
    assert status == 200 and body["enabled"] is True

    def stored() -> bool:
        query = f"SELECT count() FROM events FINAL WHERE event_id = '{event['event_id']}'"
        result = subprocess.run(
            [str(BIN / "trackflow"), "sql", "--format", "csv", query],
            cwd=ROOT,
            env=terminals.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return result.stdout.strip().splitlines()[-1:] == ["1"]

    wait_for(stored, timeout=60, interval=0.5)

    status, body = _request(f"{url}/v1/stats/overview")
    assert status == 503, body
    message = body["error"]["message"]
    assert "held by another process" in message and "CLICKHOUSE_URL" in message and "trackflow dev" in message
