"""bench.cost: tiered prices, Lambda's CPU-by-memory arithmetic, batch fill, and every line of the bill."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bench.cost import (
    HTTP_API_TIERS,
    REST_API_TIERS,
    Assumptions,
    ingest_invocations,
    lambda_seconds,
    monthly,
    pollers,
    posthog,
    table,
    tiered,
)

RESULTS = {
    "collect_events_per_s_per_core": 10_000.0,
    "ingest_handler_cpu_us_per_event": 25.0,
    "ingest_engine_floor_events_per_s_per_core": 150_000.0,
}


def test_request_prices_step_down_across_tiers() -> None:
    assert tiered(1_000_000, REST_API_TIERS) == pytest.approx(3.50)
    assert tiered(1_000_000_000, REST_API_TIERS) == pytest.approx(333 * 3.50 + 667 * 2.80)
    assert tiered(1_000_000_000, HTTP_API_TIERS) == pytest.approx(300 * 1.00 + 700 * 0.90)


def test_posthog_charges_nothing_for_the_first_million_then_per_event_in_tiers() -> None:
    assert posthog(1_000_000) == 0
    assert posthog(2_000_000) == pytest.approx(50.0)
    assert posthog(10_000_000) == pytest.approx(50.0 + 8_000_000 * 0.0000343)


def test_lambda_time_is_cpu_scaled_by_memory_plus_waiting_in_whole_milliseconds() -> None:
    assert lambda_seconds(0.001769, 0.0, 1769) == pytest.approx(0.002)  # 1.769 ms of one core, rounded up
    assert lambda_seconds(0.001, 0.003, 1769 * 2) == pytest.approx(0.004)  # 0.5 ms of CPU + 3 ms waiting
    assert lambda_seconds(0.0, 0.0, 512) == pytest.approx(0.001)


def test_a_quiet_partition_sends_a_record_or_two_per_invocation_a_busy_one_fills_the_batch() -> None:
    quiet_invocations, quiet_fill = ingest_invocations(1_000_000, Assumptions())
    assert 1 <= quiet_fill < 1.2 and quiet_invocations > 800_000
    _, busy_fill = ingest_invocations(100_000_000_000, Assumptions())
    assert busy_fill == Assumptions().batch_size


def test_the_bill_has_a_fixed_floor_of_pollers_kafka_and_clickhouse_and_logs_grow_with_traffic() -> None:
    idle = monthly(RESULTS, 0, Assumptions())
    assert idle["event_pollers"] == pytest.approx(730 * 0.185)  # one provisioned poller, always on
    assert idle["msk"] > 90 and idle["clickhouse"] > 55
    assert idle["collect_compute"] == 0 and idle["logs"] < 0.1
    busy = monthly(RESULTS, 1_000_000_000, Assumptions())
    assert busy["logs"] > busy["collect_compute"]  # CloudWatch Logs outweighs collect's compute
    assert busy["logs"] < busy["logs_before"]  # one EMF line per invocation instead of one per measurement
    assert busy["total"] == pytest.approx(
        sum(busy[k] for k in ("collect_requests", "collect_compute", "ingest_lambda", "compact_lambda", "logs"))
        + sum(busy[k] for k in ("metrics_alarms", "event_pollers", "msk", "clickhouse", "vpc_endpoints"))
        + busy["data_transfer"]
        + busy["dynamodb_secrets"]
    )


def test_the_low_traffic_profile_drops_the_poller_charge_only() -> None:
    standard = monthly(RESULTS, 1_000_000, Assumptions())
    low = monthly(RESULTS, 1_000_000, replace(Assumptions(), profile="low-traffic"))
    assert low["event_pollers"] == 0
    assert standard["total"] - low["total"] == pytest.approx(standard["event_pollers"])


def test_pollers_follow_bytes_at_five_megabytes_a_second_each() -> None:
    assert pollers(0, Assumptions()) == 1
    month_at_12_mb_per_s = 12 * 1024 * 730 * 3600
    assert pollers(month_at_12_mb_per_s, Assumptions()) == 3


def test_the_table_prints_every_line_the_floor_and_the_vendors() -> None:
    text = table(RESULTS, Assumptions())
    for words in ("CloudWatch Logs", "event pollers", "MSK Serverless", "ClickHouse Cloud", "NAT", "Fixed floor"):
        assert words in text
    assert "| Plausible (Growth) | $69.00 | $169.00 | ask | ask |" in text
