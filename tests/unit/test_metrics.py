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


def test_in_lambda_an_invocation_is_one_emf_line_with_the_prometheus_names() -> None:
    import io
    import json

    from chalicelib.emf import EmfWriter

    log = io.StringIO()
    metrics.use_emf(EmfWriter("trackflow-prod-APIHandler", stream=log))
    try:
        with metrics.produce_timer():
            pass
        metrics.record_collect(
            {"accepted": 2, "rejected": [{"reason": "ts bad"}, {"reason": "ts bad"}, {"reason": "props.x long"}]}
        )
        metrics.record_request("/v1/collect", 202)
        assert log.getvalue() == ""  # nothing until the invocation ends
        metrics.end_invocation()
        metrics.end_invocation()  # nothing new: no second line
    finally:
        metrics.use_emf(None)
    lines = [json.loads(line) for line in log.getvalue().splitlines()]
    assert len(lines) == 1
    line = lines[0]
    directives = {tuple(d["Dimensions"][0]): d for d in line["_aws"]["CloudWatchMetrics"]}
    assert {d["Namespace"] for d in directives.values()} == {"TrackFlow"}
    assert directives[("function", "route", "status")]["Metrics"] == [{"Name": "trackflow_http_requests_total"}]
    assert {m["Name"] for m in directives[("function",)]["Metrics"]} == {
        "trackflow_produce_seconds",
        "trackflow_events_accepted_total",
        "trackflow_events_rejected_total",
    }
    assert (line["function"], line["route"], line["status"]) == ("trackflow-prod-APIHandler", "/v1/collect", "202")
    assert line["trackflow_http_requests_total"] == 1
    assert line["trackflow_events_accepted_total"] == 2
    assert line["trackflow_events_rejected_total"] == 3
    assert line["rejected_reasons"] == {"ts": 2, "props": 1}  # a property, not a dimension
    assert line["trackflow_produce_seconds"] >= 0


def test_counts_are_summed_and_timings_kept_as_samples_in_the_one_line() -> None:
    import io
    import json

    from chalicelib.emf import EmfWriter

    log = io.StringIO()
    emf = EmfWriter("f", stream=log)
    emf.add({"c": (1, "Count"), "t": (0.5, "Seconds")})
    emf.add({"c": (2, "Count"), "t": (0.25, "Seconds")})
    emf.add({"r": (1, "Count")}, {"route": "/a"})
    emf.add({"r": (1, "Count")}, {"route": "/b"})  # another route in the same line: counted under the first
    emf.flush()
    line = json.loads(log.getvalue())
    assert (line["c"], line["t"], line["r"], line["route"]) == (3, [0.5, 0.25], 2, "/a")


def test_outside_lambda_no_emf_line_is_printed(capsys: Any, monkeypatch: Any) -> None:
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    metrics._emf_writer.clear()
    metrics.record_request("/health", 200)
    assert capsys.readouterr().out == ""
