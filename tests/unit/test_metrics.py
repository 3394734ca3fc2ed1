"""chalicelib.metrics: what collect and ingest results add to the Prometheus counters."""

from __future__ import annotations

from typing import Any

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


def test_in_lambda_each_measurement_is_an_emf_line_with_the_prometheus_name() -> None:
    import io
    import json

    from chalicelib.emf import EmfWriter

    log = io.StringIO()
    metrics.use_emf(EmfWriter("trackflow-prod-APIHandler", stream=log))
    try:
        metrics.record_request("/v1/collect", 202)
        metrics.record_collect(
            {"accepted": 2, "rejected": [{"reason": "ts bad"}, {"reason": "ts bad"}, {"reason": "props.x long"}]}
        )
        with metrics.produce_timer():
            pass
    finally:
        metrics.use_emf(None)
    lines = [json.loads(line) for line in log.getvalue().splitlines()]
    request = lines[0]
    declared = request["_aws"]["CloudWatchMetrics"][0]
    assert declared["Namespace"] == "TrackFlow"
    assert declared["Dimensions"] == [["function", "route", "status"]]
    assert declared["Metrics"] == [{"Name": "trackflow_http_requests_total", "Unit": "Count"}]
    assert (request["function"], request["route"], request["status"]) == (
        "trackflow-prod-APIHandler",
        "/v1/collect",
        "202",
    )
    assert request["trackflow_http_requests_total"] == 1
    by_name = [(line["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"], line) for line in lines]
    rejected = {
        line["reason"]: line["trackflow_events_rejected_total"]
        for name, line in by_name
        if name == "trackflow_events_rejected_total"
    }
    assert rejected == {"ts": 2, "props": 1}  # one line per reason, counted
    assert [line["trackflow_events_accepted_total"] for name, line in by_name if name.endswith("accepted_total")] == [2]
    assert [name for name, _ in by_name][-1] == "trackflow_produce_seconds"


def test_outside_lambda_no_emf_line_is_printed(capsys: Any, monkeypatch: Any) -> None:
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    metrics._emf_writer.clear()
    metrics.record_request("/health", 200)
    assert capsys.readouterr().out == ""
