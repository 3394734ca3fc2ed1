"""Prometheus metrics for ``GET /metrics``, through prometheus-client.

One registry per process (a Lambda instance, or ``trackflow dev``): counters
start at zero when the process does, as Prometheus expects. The names:

- ``trackflow_http_requests_total{route,status}``
- ``trackflow_events_accepted_total``, ``trackflow_events_rejected_total{reason}``
- ``trackflow_produce_seconds`` (collect waiting for Kafka's acknowledgement)
- ``trackflow_ingest_batch_events``, ``trackflow_ingest_seconds``,
  ``trackflow_rows_written_total``, ``trackflow_dead_letters_total``,
  ``trackflow_duplicates_dropped_total``, ``trackflow_erased_dropped_total`` (events of erased people)
- ``trackflow_compaction_seconds``, ``trackflow_compaction_backlog_hours``,
  ``trackflow_compaction_backlog_rows``, ``trackflow_compaction_oldest_hour_age_seconds``,
  ``trackflow_compaction_pending_age_seconds``, ``trackflow_compaction_raw_tail_seconds``,
  ``trackflow_compaction_rewrite_hours`` (set after each compaction run)
- ``trackflow_consumer_lag{topic,partition}`` (end offset minus committed, set by the local trigger runner;
  in AWS read the event source mapping's ``OffsetLag`` metric instead)

In Lambda (``AWS_LAMBDA_FUNCTION_NAME`` set) every measurement also goes into
the invocation's CloudWatch Embedded Metric Format line under the same name
(``chalicelib.emf``), printed by :func:`end_invocation`: there, ``/metrics``
would show one instance's counters. Rejections by reason are a property of
that line, not a dimension, so one line holds a request whatever it refused.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

from chalicelib.emf import EmfWriter

# prometheus-client (with http.server) costs ~50 ms to import: it is loaded on
# the first metric recorded, not by `import app`, so cold starts stay cheap.
_lock = threading.Lock()
_built: list[Any] = []


def _collectors() -> Any:
    """The registry and every collector, built once per process."""
    if _built:
        return _built[0]
    with _lock:
        if not _built:
            _built.append(_build())
    return _built[0]


_emf_writer: list[EmfWriter | None] = []


def _emf() -> EmfWriter | None:
    """The EMF writer when running in Lambda, else None; decided once per process."""
    if not _emf_writer:
        function = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
        _emf_writer.append(EmfWriter(function) if function else None)
    return _emf_writer[0]


def use_emf(writer: EmfWriter | None) -> None:
    """Send EMF lines to ``writer`` (None: none), whatever the environment says; for tests."""
    _emf_writer[:] = [writer]


def _build() -> Any:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

    registry = CollectorRegistry()
    return SimpleNamespace(
        registry=registry,
        http_requests=Counter(
            "trackflow_http_requests", "HTTP requests answered", ["route", "status"], registry=registry
        ),
        events_accepted=Counter("trackflow_events_accepted", "Events collect put on Kafka", registry=registry),
        events_rejected=Counter(
            "trackflow_events_rejected", "Events collect refused or dropped, by reason", ["reason"], registry=registry
        ),
        produce_seconds=Histogram(
            "trackflow_produce_seconds",
            "Time collect waited for Kafka to acknowledge a request's messages",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=registry,
        ),
        ingest_batch_events=Histogram(
            "trackflow_ingest_batch_events",
            "Events per ingest invocation",
            buckets=(1, 10, 50, 100, 500, 1000, 5000, 10000, 50000),
            registry=registry,
        ),
        ingest_seconds=Histogram(
            "trackflow_ingest_seconds",
            "Time one ingest invocation took",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        ),
        rows_written=Counter("trackflow_rows_written", "Event rows inserted into ClickHouse", registry=registry),
        dead_letters=Counter(
            "trackflow_dead_letters", "Records or events sent to the dead-letter topic", registry=registry
        ),
        duplicates=Counter(
            "trackflow_duplicates_dropped",
            "Events dropped as repeats of one already in the batch or already stored",
            registry=registry,
        ),
        erased=Counter(
            "trackflow_erased_dropped",
            "Events not stored because their person was erased (a redelivery after the erasure)",
            registry=registry,
        ),
        compaction_seconds=Histogram(
            "trackflow_compaction_seconds",
            "Time one compaction run took",
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=registry,
        ),
        compaction_backlog_hours=Gauge(
            "trackflow_compaction_backlog_hours", "Changed hours waiting for compaction", registry=registry
        ),
        compaction_backlog_rows=Gauge(
            "trackflow_compaction_backlog_rows",
            "Event rows in the hours waiting for compaction (redeliveries included)",
            registry=registry,
        ),
        compaction_oldest_hour_age=Gauge(
            "trackflow_compaction_oldest_hour_age_seconds",
            "Seconds since the start of the oldest hour waiting for compaction",
            registry=registry,
        ),
        compaction_pending_age=Gauge(
            "trackflow_compaction_pending_age_seconds",
            "How long past the settle time the longest-waiting hour has waited",
            registry=registry,
        ),
        compaction_raw_tail=Gauge(
            "trackflow_compaction_raw_tail_seconds",
            "Of an hour still changing, the most seconds reports read from raw events (after its cut)",
            registry=registry,
        ),
        compaction_rewrite_hours=Gauge(
            "trackflow_compaction_rewrite_hours",
            "Clean hours compaction writes again with rollup rows a migration added (an upgrade's catch-up)",
            registry=registry,
        ),
        consumer_lag=Gauge(
            "trackflow_consumer_lag",
            "Records not yet ingested, per partition",
            ["topic", "partition"],
            registry=registry,
        ),
    )


def record_request(route: str, status: int) -> None:
    _collectors().http_requests.labels(route=route, status=str(status)).inc()
    if emf := _emf():
        emf.add({"trackflow_http_requests_total": (1, "Count")}, {"route": route, "status": str(status)})


def record_collect(body: Mapping[str, object]) -> None:
    """Count what one collect answer accepted, rejected (by reason) and dropped."""
    m = _collectors()
    emf = _emf()
    accepted = body.get("accepted")
    if isinstance(accepted, int) and accepted:
        m.events_accepted.inc(accepted)
        if emf:
            emf.add({"trackflow_events_accepted_total": (accepted, "Count")})
    refused: dict[str, int] = {}
    rejected = body.get("rejected")
    if isinstance(rejected, list):
        for item in rejected:
            reason = item.get("reason", "invalid") if isinstance(item, dict) else "invalid"
            label = _reason_label(str(reason))
            refused[label] = refused.get(label, 0) + 1
    dropped = body.get("dropped")
    if isinstance(dropped, dict):
        label = str(dropped.get("reason")) if dropped.get("reason") in ("bot", "gpc") else "dropped"
        refused[label] = refused.get(label, 0) + int(dropped.get("count", 0))
    for label, count in refused.items():
        m.events_rejected.labels(reason=label).inc(count)
    if emf and refused:
        emf.add({"trackflow_events_rejected_total": (sum(refused.values()), "Count")})
        emf.note("rejected_reasons", refused)


def record_refused(code: str) -> None:
    """A whole collect request refused (401, 413, 429, ...): its events are lost to us, count them by code."""
    _collectors().events_rejected.labels(reason=code).inc()
    if emf := _emf():
        emf.add({"trackflow_events_rejected_total": (1, "Count")})
        emf.note("refused", code)


# The fields a per-event rejection can name: label values come only from here,
# never from the client's text ('props.<any key> longer than ...').
REASON_LABELS = frozenset({"event", "event_id", "type", "ts", "props", "context"})


def _reason_label(reason: str) -> str:
    """The field a rejection names ('event_id must be ...' -> event_id; 'props.x ...' -> props), or 'other'."""
    head = reason.split(" ", 1)[0].split(".", 1)[0]
    return head if head in REASON_LABELS else "other"


def record_ingest(result: Mapping[str, int], seconds: float) -> None:
    m = _collectors()
    m.ingest_seconds.observe(seconds)
    m.ingest_batch_events.observe(result.get("inserted", 0) + result.get("duplicates", 0))
    m.rows_written.inc(result.get("inserted", 0))
    m.dead_letters.inc(result.get("dead_lettered", 0))
    m.duplicates.inc(result.get("duplicates", 0))
    m.erased.inc(result.get("erased", 0))
    if emf := _emf():
        emf.add(
            {
                "trackflow_ingest_seconds": (seconds, "Seconds"),
                "trackflow_ingest_batch_events": (result.get("inserted", 0) + result.get("duplicates", 0), "Count"),
                "trackflow_rows_written_total": (result.get("inserted", 0), "Count"),
                "trackflow_dead_letters_total": (result.get("dead_lettered", 0), "Count"),
                "trackflow_duplicates_dropped_total": (result.get("duplicates", 0), "Count"),
                "trackflow_erased_dropped_total": (result.get("erased", 0), "Count"),
            }
        )


@contextmanager
def produce_timer() -> Iterator[None]:
    """Time one wait for Kafka's acknowledgement."""
    started = time.perf_counter()
    try:
        yield
    finally:
        seconds = time.perf_counter() - started
        _collectors().produce_seconds.observe(seconds)
        if emf := _emf():
            emf.add({"trackflow_produce_seconds": (seconds, "Seconds")})


def record_compaction(hours: int, seconds: float, backlog: Any) -> None:
    """What one compaction run did and what still waits (a :class:`chalicelib.rollups.compaction.Backlog`)."""
    found = _collectors()
    found.compaction_seconds.observe(seconds)
    found.compaction_backlog_hours.set(backlog.hours)
    found.compaction_backlog_rows.set(backlog.rows)
    found.compaction_oldest_hour_age.set(backlog.oldest_hour_age_s)
    found.compaction_pending_age.set(backlog.pending_age_s)
    found.compaction_raw_tail.set(backlog.raw_tail_s)
    found.compaction_rewrite_hours.set(backlog.rewrite_hours)
    if emf := _emf():
        emf.add(
            {
                "trackflow_compacted_hours_total": (hours, "Count"),
                "trackflow_compaction_seconds": (seconds, "Seconds"),
                "trackflow_compaction_backlog_hours": (backlog.hours, "Count"),
                "trackflow_compaction_backlog_rows": (backlog.rows, "Count"),
                "trackflow_compaction_oldest_hour_age_seconds": (backlog.oldest_hour_age_s, "Seconds"),
                "trackflow_compaction_pending_age_seconds": (backlog.pending_age_s, "Seconds"),
                "trackflow_compaction_raw_tail_seconds": (backlog.raw_tail_s, "Seconds"),
                "trackflow_compaction_rewrite_hours": (backlog.rewrite_hours, "Count"),
            }
        )


def end_invocation() -> None:
    """Print this invocation's EMF line (in Lambda); a no-op elsewhere."""
    if emf := _emf():
        emf.flush()


def set_lag(topic: str, partition: int, lag: int) -> None:
    _collectors().consumer_lag.labels(topic=topic, partition=str(partition)).set(lag)


def exposition() -> tuple[bytes, str]:
    """Everything above in the Prometheus text format, and its content type."""
    from prometheus_client import generate_latest
    from prometheus_client.exposition import CONTENT_TYPE_LATEST

    return generate_latest(_collectors().registry), CONTENT_TYPE_LATEST
