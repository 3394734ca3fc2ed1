"""Per-project rate limiting inside one function instance: a token bucket of events.

Each warm instance keeps its own buckets, so the effective limit across a fleet
is this rate times the number of instances; API Gateway's stage throttling (see
``trackflow/stack``) bounds the total. Both are documented in
docs/security.md.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from chalicelib.errors import RequestError


class RateLimitedError(RequestError):
    code = "rate_limited"
    status = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, field="events")
        self.retry_after = retry_after


class RateLimiter:
    """``allow(key, n, rate, burst)`` takes ``n`` tokens or raises RateLimitedError."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last refill)
        self._lock = threading.Lock()

    def allow(self, key: str, n: int, *, rate: float, burst: float) -> None:
        if rate <= 0:
            return  # unlimited
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (burst, now))
            tokens = min(burst, tokens + (now - last) * rate)
            if tokens >= n:
                self._buckets[key] = (tokens - n, now)
                return
            self._buckets[key] = (tokens, now)
        wait = math.ceil((n - tokens) / rate)
        raise RateLimitedError(
            f"this project sends more than {rate:g} events/s (burst {burst:g}); retry after {wait} s",
            retry_after=max(1, wait),
        )
