"""Prometheus metrics for ``GET /metrics``, through prometheus-client.

One registry per process (a Lambda instance, or ``trackflow dev``): counters
start at zero when the process does, as Prometheus expects. The names:

- ``trackflow_http_requests_total{route,status}``
- ``trackflow_events_accepted_total``, ``trackflow_events_rejected_total{reason}``
- ``trackflow_produce_seconds`` (collect waiting for Kafka's acknowledgement)
- ``trackflow_ingest_batch_events``, ``trackflow_ingest_seconds``,
  ``trackflow_rows_written_total``, ``trackflow_dead_letters_total``,
  ``trackflow_duplicates_dropped_total``
- ``trackflow_consumer_lag{topic,partition}`` (set by the local trigger runner;
  in AWS read the event source mapping's ``OffsetLag`` metric instead)
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

REGISTRY = CollectorRegistry()
CONTENT_TYPE = CONTENT_TYPE_LATEST

HTTP_REQUESTS = Counter("trackflow_http_requests", "HTTP requests answered", ["route", "status"], registry=REGISTRY)
EVENTS_ACCEPTED = Counter("trackflow_events_accepted", "Events collect put on Kafka", registry=REGISTRY)
EVENTS_REJECTED = Counter(
    "trackflow_events_rejected", "Events collect refused or dropped, by reason", ["reason"], registry=REGISTRY
)
PRODUCE_SECONDS = Histogram(
    "trackflow_produce_seconds",
    "Time collect waited for Kafka to acknowledge a request's messages",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)
INGEST_BATCH_EVENTS = Histogram(
    "trackflow_ingest_batch_events",
    "Events per ingest invocation",
    buckets=(1, 10, 50, 100, 500, 1000, 5000, 10000, 50000),
    registry=REGISTRY,
)
INGEST_SECONDS = Histogram(
    "trackflow_ingest_seconds",
    "Time one ingest invocation took",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
ROWS_WRITTEN = Counter("trackflow_rows_written", "Event rows inserted into ClickHouse", registry=REGISTRY)
DEAD_LETTERS = Counter("trackflow_dead_letters", "Records or events sent to the dead-letter topic", registry=REGISTRY)
DUPLICATES = Counter(
    "trackflow_duplicates_dropped", "Events dropped as repeats of an event id in the same batch", registry=REGISTRY
)
CONSUMER_LAG = Gauge(
    "trackflow_consumer_lag", "Records not yet ingested, per partition", ["topic", "partition"], registry=REGISTRY
)


def record_request(route: str, status: int) -> None:
    HTTP_REQUESTS.labels(route=route, status=str(status)).inc()


def record_collect(status: int, body: Mapping[str, object]) -> None:
    """Count what one collect answer accepted, rejected (by reason) and dropped."""
    accepted = body.get("accepted")
    if isinstance(accepted, int) and accepted:
        EVENTS_ACCEPTED.inc(accepted)
    rejected = body.get("rejected")
    if isinstance(rejected, list):
        for item in rejected:
            reason = item.get("reason", "invalid") if isinstance(item, dict) else "invalid"
            EVENTS_REJECTED.labels(reason=_reason_label(str(reason))).inc()
    dropped = body.get("dropped")
    if isinstance(dropped, dict):
        EVENTS_REJECTED.labels(reason=str(dropped.get("reason", "dropped"))).inc(int(dropped.get("count", 0)))


def record_refused(code: str) -> None:
    """A whole collect request refused (401, 413, 429, ...): its events are lost to us, count them by code."""
    EVENTS_REJECTED.labels(reason=code).inc()


def _reason_label(reason: str) -> str:
    """Keep label values few: the reason's first word, the field it names ('event_id must be ...')."""
    head = reason.split(" ", 1)[0].rstrip(":").strip()
    return head[:40] or "invalid"


def record_ingest(result: Mapping[str, int], seconds: float) -> None:
    INGEST_SECONDS.observe(seconds)
    INGEST_BATCH_EVENTS.observe(result.get("inserted", 0) + result.get("duplicates", 0))
    ROWS_WRITTEN.inc(result.get("inserted", 0))
    DEAD_LETTERS.inc(result.get("dead_lettered", 0))
    DUPLICATES.inc(result.get("duplicates", 0))


def set_lag(topic: str, partition: int, lag: int) -> None:
    CONSUMER_LAG.labels(topic=topic, partition=str(partition)).set(lag)


def exposition() -> bytes:
    """The Prometheus text format of everything above."""
    return generate_latest(REGISTRY)
