"""What collect and ingest cost on AWS per month, from the CPU `make bench` measured.

``python -m bench.cost`` reads ``bench/latest.json`` (the last ``make bench``)
and prints the table in docs/cost.md (``--sizing``: the one in docs/scaling.md): the three front doors for collect (API
Gateway REST API, HTTP API, Lambda function URL) with the Lambda compute of
collect and ingest, for 1 M, 100 M and 1 B events a month.

How a measured CPU figure becomes billed Lambda time: Lambda gives a function
CPU in proportion to its memory, one vCPU at 1,769 MB, so CPU seconds measured
on one core here take ``cpu / (memory / 1769)`` seconds there; to that comes
the time spent waiting on the network, which nothing here measures and is an
assumption below, stated, not hidden. Prices: us-east-1 list prices, x86,
without the free tier; Kafka, ClickHouse and data transfer are not included.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path

LATEST = Path(__file__).with_name("latest.json")
MB_PER_VCPU = 1769
LAMBDA_PER_MILLION_REQUESTS = 0.20
LAMBDA_PER_GB_S = {"x86_64": 0.0000166667, "arm64": 0.0000133334}
# (requests in the tier, price per million); the last tier is open-ended
REST_API_TIERS = ((333_000_000, 3.50), (667_000_000, 2.80), (19_000_000_000, 2.38), (None, 1.51))
HTTP_API_TIERS = ((300_000_000, 1.00), (None, 0.90))
VOLUMES = (1_000_000, 100_000_000, 1_000_000_000)


@dataclass(frozen=True)
class Assumptions:
    """What the bench does not measure; each is printed under the table."""

    events_per_request: float = 1.0  # the tracker sends a page view alone; batching only lowers the cost
    collect_memory_mb: int = 512  # .chalice/config.json, prod
    ingest_memory_mb: int = 1024
    kafka_ack_wait_ms: float = 3.0  # collect waits for the acknowledgement of an in-region cluster
    insert_wait_ms: float = 100.0  # ingest waits for one insert of a full batch on the ClickHouse server
    records_per_batch: int = 2000  # the mapping's BatchSize
    architecture: str = "x86_64"


def tiered(requests: float, tiers: tuple[tuple[int | None, float], ...]) -> float:
    """The price of ``requests`` under a per-million tiered price list."""
    cost, left = 0.0, requests
    for size, per_million in tiers:
        taken = left if size is None else min(left, size)
        cost += taken / 1e6 * per_million
        left -= taken
        if left <= 0:
            break
    return cost


def lambda_seconds(cpu_s: float, wait_s: float, memory_mb: int) -> float:
    """Billed seconds (1 ms granularity) of work measured as ``cpu_s`` on one core, plus waiting."""
    seconds = cpu_s / (memory_mb / MB_PER_VCPU) + wait_s
    return max(0.001, math.ceil(seconds * 1000 - 1e-9) / 1000)


def monthly(results: dict[str, float], events: int, a: Assumptions) -> dict[str, float]:
    """Dollars a month for ``events`` events: each front door, and the Lambda compute behind it."""
    price = LAMBDA_PER_GB_S[a.architecture]
    requests = events / a.events_per_request
    # collect_events_per_s_per_core was measured with 5-event requests: the CPU of one such request
    cpu_per_request = 5 / results["collect_events_per_s_per_core"]
    collect_s = lambda_seconds(cpu_per_request, a.kafka_ack_wait_ms / 1000, a.collect_memory_mb)
    collect = requests * (LAMBDA_PER_MILLION_REQUESTS / 1e6 + collect_s * a.collect_memory_mb / 1024 * price)
    batches = events / (a.records_per_batch * 5)  # a record holds a request's events (5 in the bench)
    ingest_cpu = results["ingest_handler_cpu_us_per_event"] / 1e6 * events
    ingest_s = ingest_cpu / (a.ingest_memory_mb / MB_PER_VCPU) + batches * a.insert_wait_ms / 1000
    ingest = batches * LAMBDA_PER_MILLION_REQUESTS / 1e6 + ingest_s * a.ingest_memory_mb / 1024 * price
    return {
        "rest_api": tiered(requests, REST_API_TIERS),
        "http_api": tiered(requests, HTTP_API_TIERS),
        "function_url": 0.0,
        "collect_lambda": collect,
        "ingest_lambda": ingest,
        "collect_ms": collect_s * 1000,
    }


def table(results: dict[str, float], a: Assumptions) -> str:
    rows = [
        "| events a month | API Gateway REST + Lambda | HTTP API + Lambda | function URL + Lambda | of which ingest |",
        "|---:|---:|---:|---:|---:|",
    ]
    for events in VOLUMES:
        m = monthly(results, events, a)
        compute = m["collect_lambda"] + m["ingest_lambda"]
        rows.append(
            f"| {events:,} | ${m['rest_api'] + compute:,.2f} | ${m['http_api'] + compute:,.2f} "
            f"| ${m['function_url'] + compute:,.2f} | ${m['ingest_lambda']:,.3f} |"
        )
    m = monthly(results, 1_000_000, a)
    rows += [
        "",
        f"Per million requests: REST API ${tiered(1e6, REST_API_TIERS):.2f}, HTTP API ${tiered(1e6, HTTP_API_TIERS):.2f}, "
        f"function URL $0.00; collect's Lambda ${m['collect_lambda']:.2f} "
        f"(${LAMBDA_PER_MILLION_REQUESTS:.2f} of requests, {m['collect_ms']:.0f} ms billed per request at "
        f"{a.collect_memory_mb} MB).",
        f"Measured (bench/latest.json): collect {results['collect_events_per_s_per_core']:,.0f} events/s per core "
        f"(5-event requests), ingest handler {results['ingest_handler_cpu_us_per_event']:.1f} µs CPU per event.",
        f"Assumed: {a.events_per_request:g} event per request, Kafka acknowledgement {a.kafka_ack_wait_ms:g} ms, "
        f"one insert of {a.records_per_batch} records {a.insert_wait_ms:g} ms, {a.architecture}.",
    ]
    return "\n".join(rows)


RATES = (1_000, 10_000, 100_000, 1_000_000)


def sizing(results: dict[str, float], a: Assumptions, *, event_kb: float = 1.0, headroom: float = 2.0) -> str:
    """Partitions, pollers, collect concurrency and ClickHouse cores for each rate in RATES (docs/scaling.md)."""
    rows_per_batch = a.records_per_batch * 5
    batch_s = (
        rows_per_batch * results["ingest_handler_cpu_us_per_event"] / 1e6 / (a.ingest_memory_mb / MB_PER_VCPU)
        + a.insert_wait_ms / 1000
        + 0.05  # the mapping's own turn-around between two batches of a partition (assumed)
    )
    per_partition = rows_per_batch / batch_s
    per_engine_core = results["ingest_engine_floor_events_per_s_per_core"] / 2  # half left for merges and reads
    cpu_per_request = 5 / results["collect_events_per_s_per_core"]
    request_s = cpu_per_request / (a.collect_memory_mb / MB_PER_VCPU) + a.kafka_ack_wait_ms / 1000
    per_instance = a.events_per_request / request_s
    rows = [
        f"One ingest consumer (one partition, {a.ingest_memory_mb} MB): {per_partition:,.0f} events/s. "
        f"ClickHouse: {per_engine_core:,.0f} events/s of inserts per core (half the measured "
        f"{results['ingest_engine_floor_events_per_s_per_core']:,.0f}, the rest for merges and queries). "
        f"One collect instance: {per_instance:,.0f} events/s.",
        "",
        "| events/s | partitions | event pollers (5 MB/s each) | collect concurrency | ClickHouse cores | shards |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for rate in RATES:
        partitions = max(2, math.ceil(rate * headroom / per_partition))
        pollers = max(1, math.ceil(rate * event_kb / 1024 / 5 * headroom))
        concurrency = math.ceil(rate / per_instance * headroom)
        cores = max(2, math.ceil(rate * headroom / per_engine_core))
        shards = max(1, math.ceil(cores / 32))  # servers of up to 32 cores, each with a replica
        rows.append(f"| {rate:,} | {partitions} | {pollers} | {concurrency:,} | {cores} | {shards} |")
    rows.append(
        f"\nHeadroom x{headroom:g} on every figure; events of {event_kb:g} KB on the wire; "
        "partitions at least 2, ClickHouse at least 2 cores."
    )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=LATEST, help="a bench/latest.json")
    parser.add_argument("--events-per-request", type=float, default=Assumptions.events_per_request)
    parser.add_argument("--arch", choices=sorted(LAMBDA_PER_GB_S), default="x86_64")
    parser.add_argument("--sizing", action="store_true", help="print the sizing table of docs/scaling.md instead")
    args = parser.parse_args()
    results = json.loads(args.results.read_text())["results"]
    assumptions = Assumptions(events_per_request=args.events_per_request, architecture=args.arch)
    print(sizing(results, assumptions) if args.sizing else table(results, assumptions))


if __name__ == "__main__":
    main()
