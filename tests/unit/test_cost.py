"""bench.cost: tiered request prices and Lambda's CPU-by-memory arithmetic."""

from __future__ import annotations

import pytest

from bench.cost import HTTP_API_TIERS, REST_API_TIERS, Assumptions, lambda_seconds, monthly, tiered


def test_request_prices_step_down_across_tiers() -> None:
    assert tiered(1_000_000, REST_API_TIERS) == pytest.approx(3.50)
    assert tiered(1_000_000_000, REST_API_TIERS) == pytest.approx(333 * 3.50 + 667 * 2.80)
    assert tiered(1_000_000_000, HTTP_API_TIERS) == pytest.approx(300 * 1.00 + 700 * 0.90)


def test_lambda_time_is_cpu_scaled_by_memory_plus_waiting_in_whole_milliseconds() -> None:
    assert lambda_seconds(0.001769, 0.0, 1769) == pytest.approx(0.002)  # 1.769 ms of one core, rounded up
    assert lambda_seconds(0.001, 0.003, 1769 * 2) == pytest.approx(0.004)  # 0.5 ms of CPU + 3 ms waiting
    assert lambda_seconds(0.0, 0.0, 512) == pytest.approx(0.001)


def test_the_function_url_costs_only_the_lambda_behind_it() -> None:
    results = {"collect_events_per_s_per_core": 10_000.0, "ingest_handler_cpu_us_per_event": 25.0}
    month = monthly(results, 1_000_000, Assumptions())
    assert month["function_url"] == 0
    assert month["rest_api"] - month["http_api"] == pytest.approx(2.50)
    assert month["collect_lambda"] > 0.20  # the requests alone are $0.20 a million
    assert month["ingest_lambda"] < month["collect_lambda"] / 10  # batches of 10,000 events are cheap
