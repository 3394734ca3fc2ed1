"""The per-instance token bucket."""

from __future__ import annotations

import pytest

from chalicelib.collect.ratelimit import RateLimitedError, RateLimiter


def test_allows_a_burst_then_refuses_with_retry_after_then_refills() -> None:
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    limiter.allow("p", 10, rate=5, burst=10)
    with pytest.raises(RateLimitedError) as info:
        limiter.allow("p", 3, rate=5, burst=10)
    assert info.value.status == 429
    assert info.value.retry_after == 1
    now[0] = 0.6  # 3 tokens back
    limiter.allow("p", 3, rate=5, burst=10)


def test_projects_have_separate_buckets_and_zero_means_unlimited() -> None:
    limiter = RateLimiter(clock=lambda: 0.0)
    limiter.allow("a", 10, rate=5, burst=10)
    limiter.allow("b", 10, rate=5, burst=10)
    for _ in range(100):
        limiter.allow("c", 1000, rate=0, burst=0)


def test_retry_after_grows_with_the_deficit() -> None:
    limiter = RateLimiter(clock=lambda: 0.0)
    limiter.allow("p", 10, rate=2, burst=10)
    with pytest.raises(RateLimitedError) as info:
        limiter.allow("p", 10, rate=2, burst=10)
    assert info.value.retry_after == 5
