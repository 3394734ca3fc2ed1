"""Freshness and memory of `trackflow dev` under a steady load, as a user would run it.

Starts `trackflow dev` (embedded broker + chDB, its own data dir and ports),
sends a fixed rate of events over HTTP for a fixed time, and measures, for one
probe event per request, the time from the 202 to the row being queryable
(polled through the dev server's read-only SQL endpoint). Also reads the dev
process's resident memory idle and its peak under load, and its CPU per event.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson

from bench.common import rss_mb, rss_peak_mb, tracker_event
from trackflow.broker import free_port

ROOT = Path(__file__).resolve().parent.parent
POLL_INTERVAL_S = 0.05


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _query(gate: tuple[str, str], sql: str) -> list[list[Any]]:
    """Rows from the dev server's SQL gate (its URL and secret, from dev.json)."""
    url, secret = gate
    request = urllib.request.Request(
        url, data=sql.encode(), method="POST", headers={"Authorization": f"Bearer {secret}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["rows"]


def _start_dev(data_dir: Path) -> tuple[subprocess.Popen[bytes], str, tuple[str, str]]:
    api_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "CLICKHOUSE_", "TRACKFLOW_"))}
    env["TRACKFLOW_DATA_DIR"] = str(data_dir)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trackflow.cli",
            "dev",
            "--port",
            str(api_port),
            "--broker-port",
            str(free_port()),
            "--tracker-port",
            str(free_port()),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    state = data_dir / "dev.json"
    deadline = time.monotonic() + 120
    while not state.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("trackflow dev did not start")
        time.sleep(0.2)
    dev_state = json.loads(state.read_text())
    gate = (dev_state["sql_url"], dev_state["secret"])
    api = f"http://127.0.0.1:{api_port}/v1/collect"
    while True:  # the API listens a moment after the state file appears
        try:
            _post(
                api,
                orjson.dumps(
                    {"api_key": "YOUR_API_KEY", "events": [tracker_event("w", now_ms=int(time.time() * 1000))]}
                ),
            )
            break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.2)
    return proc, api, gate


def _post(url: str, body: bytes) -> int:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "text/plain"}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(response.status)


def run(*, events_per_s: int, seconds: float, events_per_request: int = 5, senders: int = 4) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="trackflow-bench-") as tmp:
        proc, api, gate = _start_dev(Path(tmp))
        try:
            time.sleep(2)
            idle_rss = rss_mb(proc.pid) or 0.0
            return _load(
                proc,
                api,
                gate,
                events_per_s=events_per_s,
                seconds=seconds,
                events_per_request=events_per_request,
                senders=senders,
            ) | {"dev_idle_rss_mb": idle_rss}
        finally:
            proc.send_signal(2)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _load(
    proc: subprocess.Popen[bytes],
    api: str,
    gate: tuple[str, str],
    *,
    events_per_s: int,
    seconds: float,
    events_per_request: int,
    senders: int,
) -> dict[str, float]:
    requests_per_s = events_per_s / events_per_request
    total = int(requests_per_s * seconds)
    accepted: dict[str, float] = {}
    seen: dict[str, float] = {}
    failures = 0
    lock = threading.Lock()
    start = time.monotonic() + 0.5
    cpu_before = _cpu_s(proc.pid)

    def sender(worker: int) -> None:
        nonlocal failures
        for i in range(worker, total, senders):
            due = start + i / requests_per_s
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            now = int(time.time() * 1000)
            events = [tracker_event(f"v-{i % 500}", now_ms=now, seq=j) for j in range(events_per_request)]
            events[0]["type"] = "bench_probe"
            try:
                status = _post(api, orjson.dumps({"api_key": "YOUR_API_KEY", "sent_at": now, "events": events}))
            except OSError:
                status = 0
            with lock:
                if status == 202:
                    accepted[events[0]["event_id"]] = time.monotonic()
                else:
                    failures += 1

    threads = [threading.Thread(target=sender, args=(w,), daemon=True) for w in range(senders)]
    for thread in threads:
        thread.start()
    deadline = start + seconds + 30
    while time.monotonic() < deadline:
        rows = _query(
            gate,
            "SELECT toString(event_id) FROM events WHERE type = 'bench_probe' AND inserted_at >= now64(3) - INTERVAL 5 SECOND",
        )
        now = time.monotonic()
        for (event_id,) in rows:
            seen.setdefault(event_id, now)
        if not any(t.is_alive() for t in threads) and len(seen.keys() & accepted.keys()) >= len(accepted):
            break
        time.sleep(POLL_INTERVAL_S)
    cpu_used = _cpu_s(proc.pid) - cpu_before
    lags = sorted((seen[e] - t) * 1000 for e, t in accepted.items() if e in seen)
    if not lags:
        raise RuntimeError("no probe event became visible")
    return {
        "freshness_p50_ms": statistics.median(lags),
        "freshness_p95_ms": lags[min(len(lags) - 1, int(len(lags) * 0.95))],
        "freshness_max_ms": lags[-1],
        "freshness_probes": float(len(lags)),
        "freshness_missing": float(len(accepted) - len(lags)),
        "load_rejected_requests": float(failures),
        "load_events_per_s": events_per_s,
        "dev_peak_rss_mb": rss_peak_mb(proc.pid) or 0.0,
        "dev_cpu_ms_per_1k_events": cpu_used * 1000 / max(1, len(accepted) * events_per_request) * 1000,
    }
