"""Helpers shared by the benchmarks: CPU accounting, sample events, machine facts."""

from __future__ import annotations

import os
import platform
import resource
import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True)
class Sample:
    """Work done between two points: wall seconds and CPU seconds (user + sys) of this process."""

    wall_s: float
    cpu_s: float

    def per_core(self, items: int) -> float:
        """Items per CPU second: holds on a shared machine where wall time does not."""
        return items / self.cpu_s if self.cpu_s > 0 else float("inf")


class CpuTimer:
    """Measure this process's CPU (all threads, including engine threads inside it)."""

    def __enter__(self) -> CpuTimer:
        self._wall = time.perf_counter()
        self._cpu = _cpu()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sample = Sample(time.perf_counter() - self._wall, _cpu() - self._cpu)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def tracker_event(visitor: str, *, now_ms: int, event_type: str = "pageView", seq: int = 0) -> dict[str, Any]:
    """An event shaped like what tracker.js sends."""
    return {
        "event_id": str(uuid.uuid4()),
        "type": event_type,
        "ts": now_ms - 40 * seq,
        "props": {"title": "Pricing - Example Shop", "seq": seq, "tag": "BUTTON", "text": "Start free trial"},
        "context": {
            "url": f"https://shop.example/pricing?utm_source=newsletter&utm_medium=email&ref={seq}",
            "referrer": "https://www.google.com/search?q=example+shop",
            "title": "Pricing - Example Shop",
            "screen": "1920x1080",
            "language": "en-US",
            "timezone": "Europe/Berlin",
            "anonymous_id": visitor,
            "session_id": f"s-{visitor}",
            "environment": "production",
            "sdk_version": "1.0.0",
        },
    }


def tracker_bodies(count: int, *, events_per_request: int, api_key: str = "YOUR_API_KEY") -> list[bytes]:
    """``count`` request bodies, each one visitor's batch of ``events_per_request`` events."""
    now = int(time.time() * 1000)
    bodies = []
    for i in range(count):
        visitor = f"visitor-{i % 5000}"
        events = [tracker_event(visitor, now_ms=now, seq=j) for j in range(events_per_request)]
        bodies.append(orjson.dumps({"api_key": api_key, "sent_at": now, "events": events}))
    return bodies


def machine() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo") as info:
            model = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), "")
    except OSError:
        pass
    return {
        "cpu": model or platform.processor(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _status_mb(pid: int, field: str) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def rss_peak_mb(pid: int) -> float | None:
    """Peak resident memory (VmHWM) of a process, in MB."""
    return _status_mb(pid, "VmHWM:")


def rss_mb(pid: int) -> float | None:
    """Current resident memory (VmRSS) of a process, in MB."""
    return _status_mb(pid, "VmRSS:")
