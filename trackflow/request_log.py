"""The dev server's request log: every request is a line, except the dashboard's polling.

An open dashboard asks the stats API about a dozen questions every 15 s and the
live panel every 5 s; logged one by one, that buries everything else. Those
requests are counted instead and summed up in one line a minute (with how many
failed), printed when the next one arrives after the minute is up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

POLLED_PREFIXES = ("/v1/stats/", "/favicon.")
DASHBOARD_PATHS = ("/", "/dashboard", "/dashboard/")  # where the dev server serves the dashboard page
SUMMARY_EVERY_S = 60.0


def is_polling(path: str) -> bool:
    """A request an open dashboard makes by itself (its page, its icon, its stats)."""
    bare = path.split("?", 1)[0]
    return bare in DASHBOARD_PATHS or bare.startswith(POLLED_PREFIXES)


class PollLog:
    """Counts polling requests and gives one summary line per ``every_s``; thread-safe."""

    def __init__(self, *, every_s: float = SUMMARY_EVERY_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._every_s = every_s
        self._clock = clock
        self._lock = threading.Lock()
        self._since = clock()
        self._count = 0
        self._failed = 0

    def count(self, status: int) -> str | None:
        """Count one polling request; the summary line when a period is over, else None."""
        with self._lock:
            self._count += 1
            self._failed += status >= 400
            now = self._clock()
            if now - self._since < self._every_s:
                return None
            line = (
                f"dashboard polling: {self._count} requests to the stats API in the last "
                f"{now - self._since:.0f} s, {self._failed} failed"
            )
            self._since, self._count, self._failed = now, 0, 0
            return line
