"""What a deployed TrackFlow costs on AWS a month, every line, from what `make bench` measured.

``python -m bench.cost`` reads ``bench/latest.json`` (the last ``make bench``)
and prints docs/cost.md's tables: every line of the monthly bill for 1 M,
10 M, 100 M and 1 B events, the fixed floor, the price of the same volume at
Plausible, PostHog and Fathom, and (``--front-doors``) collect behind each of
the three front doors; ``--sizing`` prints docs/scaling.md's table instead.
``--profile low-traffic`` prices on-demand event pollers instead of
provisioned ones (``EventPollerMode=on-demand``).

Where the figures come from:

- Lambda compute: the CPU per request and per event `make bench` measured on
  one core, scaled to the vCPU share Lambda gives the function's memory (one
  vCPU at 1,769 MB), plus the waiting nothing here measures (stated below).
- CloudWatch Logs: the bytes one invocation of each function writes (``LOG_BYTES``),
  measured under the Lambda runtime emulator by
  tests/integration/test_lambda_runtime.py, which fails when a log outgrows them.
- Ingest invocations at the batch fill a mapping reaches at that traffic: with
  a one-second batching window a quiet partition sends a record or two per
  invocation, a busy one thousands.
- Everything else is a list price (us-east-1, x86, no free tier, as of 2026)
  times an assumption printed under the table.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

LATEST = Path(__file__).with_name("latest.json")
HOURS = 730  # a month
SECONDS = HOURS * 3600
MB_PER_VCPU = 1769
GB = 1024**3

# -- list prices (us-east-1) -----------------------------------------------------------------------------------
LAMBDA_PER_MILLION_REQUESTS = 0.20
LAMBDA_PER_GB_S = {"x86_64": 0.0000166667, "arm64": 0.0000133334}
REST_API_TIERS = ((333_000_000, 3.50), (667_000_000, 2.80), (19_000_000_000, 2.38), (None, 1.51))
HTTP_API_TIERS = ((300_000_000, 1.00), (None, 0.90))
LOGS_PER_GB_INGESTED = 0.50
LOGS_PER_GB_MONTH_STORED = 0.03
METRIC_PER_MONTH = 0.30  # a custom metric (EMF name + dimension values)
ALARM_PER_MONTH = 0.10
EVENT_POLLER_UNIT_HOUR = 0.185  # provisioned mode of the Kafka event source mapping
MSK_T3_SMALL_HOUR = 0.0456
MSK_STORAGE_GB_MONTH = 0.10
MSK_SERVERLESS_CLUSTER_HOUR = 0.75
MSK_SERVERLESS_PARTITION_HOUR = 0.0015
MSK_SERVERLESS_IN_GB = 0.10
MSK_SERVERLESS_OUT_GB = 0.05
EC2_M7G_LARGE_HOUR = 0.0816  # 2 vCPU, 8 GiB: a self-hosted ClickHouse
EBS_GP3_GB_MONTH = 0.08
CLICKHOUSE_CLOUD_BASIC_MONTH = 66.52  # the smallest service on ClickHouse Cloud's Basic tier (its pricing page, 2025)
CLICKHOUSE_CLOUD_STORAGE_TB_MONTH = 25.30
INTERFACE_ENDPOINT_HOUR = 0.01  # per AZ
NAT_GATEWAY_HOUR = 0.045
NAT_PER_GB = 0.045
INTERNET_OUT_PER_GB = 0.09
CROSS_AZ_PER_GB = 0.02  # $0.01 out of one AZ and $0.01 into the other
DYNAMODB_PER_MILLION_READS = 0.125
SECRET_PER_MONTH = 0.40

# -- what each invocation logs (bytes: START, END, REPORT and one EMF line); see the module docstring ---------
# ingest: also the erased events it dropped; compact: eight metrics of its backlog (1,233 bytes measured)
LOG_BYTES = {"collect": 850, "ingest": 950, "compact": 1300}
LOG_BYTES_BEFORE = {"collect": 1124}  # one EMF line per measurement, as before 2026-12-03

VOLUMES = (1_000_000, 10_000_000, 100_000_000, 1_000_000_000)
# Published prices for the same number of events (pageviews + custom events) a month, monthly billing.
# Plausible: plausible/analytics priv/plan_prices.json (Growth plans; above 10 M: "contact us").
# PostHog: product analytics, 1 M events free, then per event in tiers (its pricing page).
# Fathom: its pricing page; up to 1 M checked, 10 M from its price list as we last read it; above: "contact us".
PLAUSIBLE = {1_000_000: 69.0, 10_000_000: 169.0}
FATHOM = {1_000_000: 60.0, 10_000_000: 190.0}
POSTHOG_TIERS = (
    (1_000_000, 0.0),
    (1_000_000, 0.0000500),
    (13_000_000, 0.0000343),
    (35_000_000, 0.0000295),
    (50_000_000, 0.0000218),
    (150_000_000, 0.0000150),
    (None, 0.0000090),
)


@dataclass(frozen=True)
class Assumptions:
    """What the bench does not measure; each is printed under the table."""

    events_per_request: float = 1.0  # the tracker sends a page view alone; batching only lowers the cost
    event_kb: float = 1.0  # one event on the wire and in Kafka
    stored_bytes_per_event: float = 100.0  # in ClickHouse, compressed
    months_kept: int = 13  # ClickHouse keeps 400 days
    kafka_retention_days: int = 7
    collect_memory_mb: int = 512  # .chalice/config.json, prod
    ingest_memory_mb: int = 1024
    compact_memory_mb: int = 1024
    compact_billed_s: float = 0.3  # one compaction with little to do
    kafka_ack_wait_ms: float = 3.0  # collect waits for an in-region cluster's acknowledgement
    insert_fixed_ms: float = 20.0  # one insert's round trip to ClickHouse, whatever its size ...
    insert_per_row_us: float = 8.0  # ... plus this per row (100 ms for 10,000 rows)
    batch_size: int = 2000  # the mapping's BatchSize
    batching_window_s: float = 1.0
    partitions: int = 4
    response_bytes: int = 500  # collect's 202, headers included
    custom_metrics: int = 30  # EMF metrics of the four functions and the mapping's
    alarms: int = 11
    secrets: int = 2  # the salt and the ClickHouse password
    profile: str = "standard"  # or "low-traffic": on-demand event pollers, no retry controls
    architecture: str = "x86_64"


def tiered(count: float, tiers: tuple[tuple[int | None, float], ...]) -> float:
    """The price of ``count`` units under a tiered price list of (units in the tier, price per million)."""
    cost, left = 0.0, count
    for size, per_million in tiers:
        taken = left if size is None else min(left, size)
        cost += taken / 1e6 * per_million
        left -= taken
        if left <= 0:
            break
    return cost


def posthog(events: float) -> float:
    cost, left = 0.0, events
    for size, per_event in POSTHOG_TIERS:
        taken = left if size is None else min(left, size)
        cost += taken * per_event
        left -= taken
        if left <= 0:
            break
    return cost


def lambda_seconds(cpu_s: float, wait_s: float, memory_mb: int) -> float:
    """Billed seconds (1 ms granularity) of work measured as ``cpu_s`` on one core, plus waiting."""
    seconds = cpu_s / (memory_mb / MB_PER_VCPU) + wait_s
    return max(0.001, math.ceil(seconds * 1000 - 1e-9) / 1000)


def _gb_s(seconds: float, memory_mb: int, a: Assumptions) -> float:
    return seconds * memory_mb / 1024 * LAMBDA_PER_GB_S[a.architecture]


def ingest_invocations(events: int, a: Assumptions) -> tuple[float, float]:
    """Invocations a month and records per invocation, at the fill the batching window reaches."""
    records = events / a.events_per_request
    per_partition_per_s = records / SECONDS / a.partitions
    fill = min(a.batch_size, 1 + per_partition_per_s * a.batching_window_s)
    return records / fill, fill


def _logs(invocations: float, kind: str) -> float:
    gigabytes = invocations * LOG_BYTES[kind] / GB
    return gigabytes * (LOGS_PER_GB_INGESTED + LOGS_PER_GB_MONTH_STORED)


def pollers(events: int, a: Assumptions) -> int:
    """Provisioned event pollers the mapping needs: one per 5 MB/s, at least one (MinimumPollers)."""
    mb_per_s = events / SECONDS * a.event_kb / 1024
    return max(1, math.ceil(mb_per_s / 5))


def monthly(results: dict[str, float], events: int, a: Assumptions) -> dict[str, float]:
    """Every line of the month's bill, in dollars, for ``events`` events."""
    requests = events / a.events_per_request
    # measured with 5-event requests: the CPU of one such request, an upper bound for smaller ones
    cpu_per_request = 5 / results["collect_events_per_s_per_core"]
    collect_s = lambda_seconds(cpu_per_request, a.kafka_ack_wait_ms / 1000, a.collect_memory_mb)
    invocations, fill = ingest_invocations(events, a)
    rows = fill * a.events_per_request
    ingest_s = lambda_seconds(
        rows * results["ingest_handler_cpu_us_per_event"] / 1e6,
        (a.insert_fixed_ms + rows * a.insert_per_row_us / 1000) / 1000,
        a.ingest_memory_mb,
    )
    compactions = HOURS * 60
    event_gb = events * a.event_kb / 1024 / 1024
    kafka_gb_stored = event_gb * a.kafka_retention_days / 30 * 3  # replication factor 3
    clickhouse_gb = events * a.stored_bytes_per_event * a.months_kept / GB
    lines = {
        "collect_requests": requests * LAMBDA_PER_MILLION_REQUESTS / 1e6,
        "collect_compute": requests * _gb_s(collect_s, a.collect_memory_mb, a),
        "ingest_lambda": invocations * (LAMBDA_PER_MILLION_REQUESTS / 1e6 + _gb_s(ingest_s, a.ingest_memory_mb, a)),
        "compact_lambda": compactions
        * (LAMBDA_PER_MILLION_REQUESTS / 1e6 + _gb_s(a.compact_billed_s, a.compact_memory_mb, a)),
        "logs": _logs(requests, "collect") + _logs(invocations, "ingest") + _logs(compactions, "compact"),
        "metrics_alarms": a.custom_metrics * METRIC_PER_MONTH + a.alarms * ALARM_PER_MONTH,
        "event_pollers": pollers(events, a) * HOURS * EVENT_POLLER_UNIT_HOUR if a.profile == "standard" else 0.0,
        "msk": 3 * MSK_T3_SMALL_HOUR * HOURS + kafka_gb_stored * MSK_STORAGE_GB_MONTH,
        "clickhouse": EC2_M7G_LARGE_HOUR * HOURS + max(20.0, clickhouse_gb) * EBS_GP3_GB_MONTH,
        "vpc_endpoints": 2 * INTERFACE_ENDPOINT_HOUR * HOURS,
        "data_transfer": requests * a.response_bytes / GB * INTERNET_OUT_PER_GB
        + 3 * event_gb * 2 / 3 * CROSS_AZ_PER_GB,  # produce, consume, insert; two AZs in three are another
        "dynamodb_secrets": 2 * compactions * DYNAMODB_PER_MILLION_READS / 1e6 + a.secrets * SECRET_PER_MONTH,
    }
    lines["total"] = sum(lines.values())
    lines["msk_serverless"] = (
        (MSK_SERVERLESS_CLUSTER_HOUR + (a.partitions + 2) * MSK_SERVERLESS_PARTITION_HOUR) * HOURS
        + event_gb * (MSK_SERVERLESS_IN_GB + MSK_SERVERLESS_OUT_GB)
        + kafka_gb_stored / 3 * MSK_STORAGE_GB_MONTH
    )
    lines["clickhouse_cloud"] = CLICKHOUSE_CLOUD_BASIC_MONTH + clickhouse_gb / 1024 * CLICKHOUSE_CLOUD_STORAGE_TB_MONTH
    lines["nat_gateway"] = NAT_GATEWAY_HOUR * HOURS + 0.001 * NAT_PER_GB  # only Secrets Manager calls go through it
    lines["rest_api"] = tiered(requests, REST_API_TIERS)
    lines["http_api"] = tiered(requests, HTTP_API_TIERS)
    lines["ingest_fill"] = fill
    lines["ingest_invocations"] = invocations
    lines["collect_ms"] = collect_s * 1000
    lines["logs_before"] = (
        requests * LOG_BYTES_BEFORE["collect"] / GB * (LOGS_PER_GB_INGESTED + LOGS_PER_GB_MONTH_STORED)
    )
    return lines


LINES = (
    ("collect_requests", "collect: Lambda requests ($0.20 a million)"),
    ("collect_compute", "collect: Lambda compute (measured CPU + Kafka's ack)"),
    ("ingest_lambda", "ingest: Lambda, at the batch fill reached"),
    ("compact_lambda", "compact: Lambda, every minute"),
    ("logs", "CloudWatch Logs (ingested + a month stored)"),
    ("metrics_alarms", "CloudWatch metrics (EMF, mapping) and alarms"),
    ("event_pollers", "Kafka mapping: provisioned event pollers"),
    ("msk", "MSK provisioned: 3 x kafka.t3.small + storage"),
    ("clickhouse", "ClickHouse self-hosted: m7g.large + gp3"),
    ("vpc_endpoints", "VPC interface endpoint (Secrets Manager, 2 AZ)"),
    ("data_transfer", "data transfer: answers out, cross-AZ Kafka and inserts"),
    ("dynamodb_secrets", "DynamoDB reads + Secrets Manager"),
)
ALTERNATIVES = (
    ("rest_api", "+ API Gateway REST API in front (instead of the URL)"),
    ("http_api", "+ API Gateway HTTP API in front (instead of the URL)"),
    ("msk_serverless", "MSK Serverless instead of provisioned"),
    ("clickhouse_cloud", "ClickHouse Cloud (smallest Basic) instead of self-hosted"),
    ("nat_gateway", "a NAT gateway instead of the endpoint"),
)


def _money(value: float) -> str:
    return f"${value:,.2f}" if value < 1000 else f"${value:,.0f}"


def _vendor(prices: dict[int, float], events: int) -> str:
    return _money(prices[events]) if events in prices else "ask"


def table(results: dict[str, float], a: Assumptions) -> str:
    months = {events: monthly(results, events, a) for events in VOLUMES}
    head = "| line | " + " | ".join(f"{v / 1e6:,.0f} M events" for v in VOLUMES) + " |"
    rows = [head, "|---|" + "---:|" * len(VOLUMES)]
    for key, label in LINES:
        rows.append(f"| {label} | " + " | ".join(_money(months[v][key]) for v in VOLUMES) + " |")
    rows.append("| **total** | " + " | ".join(f"**{_money(months[v]['total'])}**" for v in VOLUMES) + " |")
    rows.append("| per million events | " + " | ".join(_money(months[v]["total"] / v * 1e6) for v in VOLUMES) + " |")
    for key, label in ALTERNATIVES:
        rows.append(f"| {label} | " + " | ".join(_money(months[v][key]) for v in VOLUMES) + " |")
    rows.append("| Plausible (Growth) | " + " | ".join(_vendor(PLAUSIBLE, v) for v in VOLUMES) + " |")
    rows.append("| PostHog (product analytics) | " + " | ".join(_money(posthog(v)) for v in VOLUMES) + " |")
    rows.append("| Fathom | " + " | ".join(_vendor(FATHOM, v) for v in VOLUMES) + " |")
    floor = monthly(results, 0, a)["total"]
    small, big = months[VOLUMES[0]], months[VOLUMES[-1]]
    rows += [
        "",
        f"Fixed floor (no traffic at all): {_money(floor)} a month ({a.profile} profile).",
        f"Ingest fills {small['ingest_fill']:,.1f} records per invocation at {VOLUMES[0] / 1e6:g} M events "
        f"({small['ingest_invocations']:,.0f} invocations) and {big['ingest_fill']:,.0f} at {VOLUMES[-1] / 1e6:,.0f} M "
        f"({big['ingest_invocations']:,.0f}).",
        f"CloudWatch Logs per collect request: {LOG_BYTES['collect']} bytes (was {LOG_BYTES_BEFORE['collect']} with "
        f"one EMF line per measurement: {_money(big['logs_before'])} instead of "
        f"{_money(_logs(VOLUMES[-1] / a.events_per_request, 'collect'))} at {VOLUMES[-1] / 1e6:,.0f} M).",
        f"Measured (bench/latest.json): collect {results['collect_events_per_s_per_core']:,.0f} events/s per core "
        f"(5-event requests), ingest handler {results['ingest_handler_cpu_us_per_event']:.1f} µs CPU per event.",
        f"Assumed: {a.events_per_request:g} event per request, {a.event_kb:g} KB per event, Kafka acknowledgement "
        f"{a.kafka_ack_wait_ms:g} ms, an insert {a.insert_fixed_ms:g} ms + {a.insert_per_row_us:g} µs a row, "
        f"{a.partitions} partitions with a {a.batching_window_s:g} s window, {a.stored_bytes_per_event:g} bytes "
        f"an event in ClickHouse kept {a.months_kept} months, {a.custom_metrics} custom metrics, {a.alarms} alarms, "
        f"{a.architecture}.",
    ]
    return "\n".join(rows)


def front_doors(results: dict[str, float], a: Assumptions) -> str:
    """Collect behind each front door: the door's request price plus collect's and ingest's Lambda."""
    rows = [
        "| events a month | API Gateway REST + Lambda | HTTP API + Lambda | function URL + Lambda |",
        "|---:|---:|---:|---:|",
    ]
    for events in VOLUMES:
        m = monthly(results, events, a)
        compute = m["collect_requests"] + m["collect_compute"] + m["ingest_lambda"]
        rows.append(
            f"| {events:,} | {_money(m['rest_api'] + compute)} | {_money(m['http_api'] + compute)} "
            f"| {_money(compute)} |"
        )
    return "\n".join(rows)


RATES = (1_000, 10_000, 100_000, 1_000_000)
POLLER_MB_PER_S = 5.0
INVOKE_PAYLOAD_MB = 6.0


def sizing(results: dict[str, float], a: Assumptions, *, headroom: float = 2.0) -> str:
    """Partitions, pollers, collect concurrency and ClickHouse cores for each rate in RATES (docs/scaling.md).

    Partitions are sized by ingest's CPU and by bytes: one partition feeds one
    poller at a time, which moves about 5 MB/s, in payloads of at most 6 MB.
    """
    rows_per_batch = a.batch_size * 5
    batch_s = (
        rows_per_batch * results["ingest_handler_cpu_us_per_event"] / 1e6 / (a.ingest_memory_mb / MB_PER_VCPU)
        + (a.insert_fixed_ms + rows_per_batch * a.insert_per_row_us / 1000) / 1000
        + 0.05  # the mapping's own turn-around between two batches of a partition (assumed)
    )
    per_partition_cpu = rows_per_batch / batch_s
    per_partition_bytes = POLLER_MB_PER_S * 1024 / a.event_kb
    per_partition = min(per_partition_cpu, per_partition_bytes)
    per_engine_core = results["ingest_engine_floor_events_per_s_per_core"] / 2  # half left for merges and reads
    request_s = (5 / results["collect_events_per_s_per_core"]) / (a.collect_memory_mb / MB_PER_VCPU) + (
        a.kafka_ack_wait_ms / 1000
    )
    per_instance = a.events_per_request / request_s
    rows = [
        f"One ingest consumer (one partition, {a.ingest_memory_mb} MB): {per_partition_cpu:,.0f} events/s of CPU, "
        f"{per_partition_bytes:,.0f} events/s of a poller's {POLLER_MB_PER_S:g} MB/s at {a.event_kb:g} KB an event: "
        f"{per_partition:,.0f} events/s. ClickHouse: {per_engine_core:,.0f} events/s of inserts per core (half the "
        f"measured {results['ingest_engine_floor_events_per_s_per_core']:,.0f}, the rest for merges and queries). "
        f"One collect instance: {per_instance:,.0f} events/s.",
        "",
        "| events/s | partitions | event pollers (5 MB/s each) | collect concurrency | ClickHouse cores | shards |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for rate in RATES:
        partitions = max(2, math.ceil(rate * headroom / per_partition))
        poller_count = max(1, math.ceil(rate * a.event_kb / 1024 / POLLER_MB_PER_S * headroom))
        concurrency = math.ceil(rate / per_instance * headroom)
        cores = max(2, math.ceil(rate * headroom / per_engine_core))
        shards = max(1, math.ceil(cores / 32))  # servers of up to 32 cores, each with a replica
        rows.append(f"| {rate:,} | {partitions} | {poller_count} | {concurrency:,} | {cores} | {shards} |")
    rows.append(
        f"\nHeadroom x{headroom:g} on every figure; events of {a.event_kb:g} KB on the wire; partitions at least 2, "
        f"ClickHouse at least 2 cores. A batch never passes Lambda's {INVOKE_PAYLOAD_MB:g} MB invoke payload: the "
        "mapping (and the local trigger) close it there, so large events only mean more, smaller batches."
    )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=LATEST, help="a bench/latest.json")
    parser.add_argument("--events-per-request", type=float, default=Assumptions.events_per_request)
    parser.add_argument("--arch", choices=sorted(LAMBDA_PER_GB_S), default="x86_64")
    parser.add_argument("--profile", choices=["standard", "low-traffic"], default="standard")
    parser.add_argument("--front-doors", action="store_true", help="collect behind each front door instead")
    parser.add_argument("--sizing", action="store_true", help="print the sizing table of docs/scaling.md instead")
    args = parser.parse_args()
    results = json.loads(args.results.read_text())["results"]
    assumptions = replace(
        Assumptions(), events_per_request=args.events_per_request, architecture=args.arch, profile=args.profile
    )
    if args.sizing:
        print(sizing(results, assumptions))
    elif args.front_doors:
        print(front_doors(results, assumptions))
    else:
        print(table(results, assumptions))


if __name__ == "__main__":
    main()
