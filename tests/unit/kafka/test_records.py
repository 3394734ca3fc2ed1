"""The AWS Kafka mapping payload: decoding both event sources and round-tripping records."""

from __future__ import annotations

import base64

import pytest

from chalicelib.errors import RequestError
from chalicelib.kafka.records import build_event, decode_records, encode_record, split_by_size

# Shaped like the example in the AWS Lambda developer guide (MSK).
MSK_EVENT = {
    "eventSource": "aws:kafka",
    "eventSourceArn": "arn:aws:kafka:us-east-1:123456789012:cluster/vpc-2priv-2pub/751d2973-a626-431c-9d4e-d7975eb44dd7-2",
    "bootstrapServers": "b-2.demo-cluster-1.a1bcde.c1.kafka.us-east-1.amazonaws.com:9092",
    "records": {
        "mytopic-0": [
            {
                "topic": "mytopic",
                "partition": 0,
                "offset": 15,
                "timestamp": 1545084650987,
                "timestampType": "CREATE_TIME",
                "key": "YWJjREVGMTIzNDU2Nzg5MA==",
                "value": "SGVsbG8sIHRoaXMgaXMgYSB0ZXN0Lg==",
                "headers": [{"headerKey": [104, 101, 97, 100, 101, 114, 86, 97, 108, 117, 101]}],
            }
        ]
    },
}


def test_decodes_an_msk_payload() -> None:
    (record,) = decode_records(MSK_EVENT)
    assert (record.topic, record.partition, record.offset) == ("mytopic", 0, 15)
    assert record.key == b"abcDEF1234567890"
    assert record.value == b"Hello, this is a test."
    assert record.headers == {"headerKey": b"headerValue"}
    assert record.error is None


def test_decodes_a_self_managed_payload_with_signed_header_bytes_and_null_key() -> None:
    event = {
        "eventSource": "SelfManagedKafka",
        "bootstrapServers": "k:9092",
        "records": {
            "t-1": [
                {
                    "topic": "t",
                    "partition": 1,
                    "offset": 3,
                    "timestamp": 0,
                    "key": None,
                    "value": "eA==",
                    "headers": [{"h": [-61, -87]}],
                }
            ]
        },
    }
    (record,) = decode_records(event)
    assert record.key is None
    assert record.value == b"x"
    assert record.headers == {"h": "é".encode()}


def test_marks_a_record_with_bad_base64_instead_of_failing_the_batch() -> None:
    event = {
        "eventSource": "aws:kafka",
        "records": {"t-0": [{"topic": "t", "partition": 0, "offset": 1, "value": "%%%"}]},
    }
    (record,) = decode_records(event)
    assert record.value is None
    assert record.error is not None
    assert "base64" in record.error


@pytest.mark.parametrize(
    "event",
    [
        [],
        {"eventSource": "aws:sqs", "records": {}},
        {"eventSource": "aws:kafka", "records": []},
        {"eventSource": "aws:kafka", "records": {"t-0": {}}},
        {"eventSource": "aws:kafka", "records": {"t-0": [{"topic": "t"}]}},
    ],
)
def test_rejects_payloads_of_the_wrong_shape(event: object) -> None:
    with pytest.raises(RequestError):
        decode_records(event)


def test_build_event_round_trips_through_decode_grouped_by_topic_partition() -> None:
    records = [
        encode_record(
            topic="t", partition=p, offset=o, timestamp=7, key=b"k", value=b"v%d" % o, headers=[("a", b"\x00\xff")]
        )
        for p, o in [(0, 1), (1, 5), (0, 2)]
    ]
    event = build_event(records, bootstrap_servers="b:9092")
    assert event["eventSource"] == "SelfManagedKafka"
    assert sorted(event["records"]) == ["t-0", "t-1"]  # type: ignore[call-overload]
    decoded = decode_records(event)
    assert [(r.partition, r.offset, r.value) for r in decoded] == [(0, 1, b"v1"), (0, 2, b"v2"), (1, 5, b"v5")]
    assert decoded[0].headers == {"a": b"\x00\xff"}
    assert base64.b64decode(event["records"]["t-0"][0]["key"]) == b"k"  # type: ignore[index]


def test_a_batch_is_split_where_its_payload_would_pass_the_limit() -> None:
    import json

    records = [
        encode_record(topic="t", partition=n % 3, offset=n, timestamp=0, key=b"k", value=b"v" * 3000)
        for n in range(100)
    ]
    runs = split_by_size(records, limit=64 * 1024)
    assert [r for run in runs for r in run] == records  # in order, none lost
    assert len(runs) > 1
    for run in runs:
        assert len(json.dumps(build_event(run, bootstrap_servers="b:9092")).encode()) <= 64 * 1024
    assert split_by_size(records) == [records]  # far below 6 MB: one payload


def test_a_record_too_big_for_any_payload_is_refused() -> None:
    big = encode_record(topic="t", partition=0, offset=0, timestamp=0, key=None, value=b"v" * 5000)
    with pytest.raises(ValueError, match="cannot fit"):
        split_by_size([big], limit=4096)
