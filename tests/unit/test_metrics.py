"""chalicelib.metrics: what collect and ingest results add to the Prometheus counters."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from chalicelib import metrics


def _value(name: str, **labels: str) -> float:
    body, _ = metrics.exposition()
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


def test_a_collect_answer_counts_accepted_rejected_by_field_and_dropped_by_reason() -> None:
    before = (_value("trackflow_events_accepted_total"), _value("trackflow_events_rejected_total", reason="ts"))
    bots = _value("trackflow_events_rejected_total", reason="bot")
    metrics.record_collect({"accepted": 3, "rejected": [{"index": 1, "reason": "ts must be epoch milliseconds"}]})
    metrics.record_collect({"accepted": 0, "rejected": [], "dropped": {"count": 4, "reason": "bot"}})
    assert _value("trackflow_events_accepted_total") == before[0] + 3
    assert _value("trackflow_events_rejected_total", reason="ts") == before[1] + 1
    assert _value("trackflow_events_rejected_total", reason="bot") == bots + 4


def test_an_ingest_result_moves_rows_dead_letters_duplicates_and_the_histograms() -> None:
    rows, dead, dup = (
        _value("trackflow_rows_written_total"),
        _value("trackflow_dead_letters_total"),
        _value("trackflow_duplicates_dropped_total"),
    )
    count = _value("trackflow_ingest_seconds_count")
    metrics.record_ingest({"records": 2, "inserted": 5, "duplicates": 1, "dead_lettered": 2}, 0.02)
    assert _value("trackflow_rows_written_total") == rows + 5
    assert _value("trackflow_dead_letters_total") == dead + 2
    assert _value("trackflow_duplicates_dropped_total") == dup + 1
    assert _value("trackflow_ingest_seconds_count") == count + 1


def test_lag_is_a_gauge_per_partition() -> None:
    metrics.set_lag("events", 3, 42)
    metrics.set_lag("events", 3, 7)
    assert _value("trackflow_consumer_lag", topic="events", partition="3") == 7


def test_rejection_labels_come_from_a_fixed_set_never_from_client_text() -> None:
    for n in range(50):
        metrics.record_collect({"accepted": 0, "rejected": [{"index": 0, "reason": f"props.key{n} longer than 2048"}]})
        metrics.record_collect({"accepted": 0, "rejected": [{"index": 0, "reason": f"client-{n} text"}]})
    metrics.record_collect({"accepted": 0, "dropped": {"count": 1, "reason": "anything-a-client-says"}})
    body = metrics.exposition()[0].decode()
    labels = {line.split('reason="', 1)[1].split('"', 1)[0] for line in body.splitlines() if 'reason="' in line}
    assert not [label for label in labels if label.startswith(("props.key", "client-", "anything-"))]
    assert {"props", "other", "dropped"} <= labels
