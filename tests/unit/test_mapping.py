"""trackflow.mapping and the trigger runner's failure handling: what the deployed mapping does, locally."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.kafka.records import RECORD_AGE_EXCEEDED, RETRIES_EXHAUSTED, encode_record
from trackflow.mapping import ConfigurationError, MappingPolicy
from trackflow.runner import TriggerRunner
from trackflow.stack import merge_template


def test_the_local_trigger_defaults_are_the_stacks_parameter_defaults() -> None:
    parameters = merge_template()["Parameters"]
    policy = MappingPolicy()
    assert policy.maximum_retry_attempts == parameters["MaximumRetryAttempts"]["Default"]
    assert policy.maximum_record_age_s == parameters["MaximumRecordAgeInSeconds"]["Default"]
    assert policy.bisect == (parameters["BisectBatchOnFunctionError"]["Default"] == "true")
    assert policy.on_failure == parameters["OnFailureDestination"]["Default"]
    assert MappingPolicy.from_env({}) == policy  # and nothing set means the same


def test_retries_are_bounded_only_with_a_destination_and_infinite_becomes_ten() -> None:
    assert MappingPolicy(on_failure=None).retries is None  # retried until it succeeds
    assert MappingPolicy(maximum_retry_attempts=-1).retries == 10
    assert MappingPolicy(maximum_retry_attempts=3).retries == 3


def test_the_environment_sets_the_policy_and_names_a_bad_value() -> None:
    policy = MappingPolicy.from_env(
        {
            "TRACKFLOW_MAXIMUM_RETRY_ATTEMPTS": "2",
            "TRACKFLOW_MAXIMUM_RECORD_AGE": "60",
            "TRACKFLOW_BISECT_BATCH_ON_ERROR": "true",
            "TRACKFLOW_ON_FAILURE_DESTINATION": "",
        }
    )
    assert (policy.maximum_retry_attempts, policy.maximum_record_age_s, policy.bisect, policy.on_failure) == (
        2,
        60,
        True,
        None,
    )
    with pytest.raises(ConfigurationError, match="TRACKFLOW_ON_FAILURE_DESTINATION"):
        MappingPolicy.from_env({"TRACKFLOW_ON_FAILURE_DESTINATION": "sqs://queue"})
    with pytest.raises(ConfigurationError, match="TRACKFLOW_MAXIMUM_RETRY_ATTEMPTS"):
        MappingPolicy.from_env({"TRACKFLOW_MAXIMUM_RETRY_ATTEMPTS": "ten"})


def test_the_back_off_doubles_up_to_its_cap() -> None:
    policy = MappingPolicy(backoff_s=0.5, backoff_max_s=3)
    assert [policy.backoff(n) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3.0, 3.0]


class _Destination:
    def __init__(self) -> None:
        self.sent: list[tuple[list[int], str, int]] = []

    def send(self, records: Any, *, condition: str, invocations: int, error: str) -> None:
        self.sent.append(([int(r["offset"]) for r in records], condition, invocations))


def _records(count: int, *, timestamp: int | None = None) -> list[dict[str, object]]:
    import time

    stamp = int(time.time() * 1000) if timestamp is None else timestamp
    return [
        encode_record(topic="t", partition=0, offset=n, timestamp=stamp, key=b"k", value=b'{"v":2}')
        for n in range(count)
    ]


def _runner(handler: Any, policy: MappingPolicy, destination: Any) -> TriggerRunner:
    return TriggerRunner(handler, bootstrap_servers="b:9092", topic="t", policy=policy, destination=destination)


def test_a_batch_failing_past_its_retries_goes_whole_to_the_destination() -> None:
    calls: list[int] = []

    def failing(payload: dict[str, Any], _context: Any) -> None:
        calls.append(sum(len(v) for v in payload["records"].values()))
        raise ConnectionError("ClickHouse is down")

    destination = _Destination()
    runner = _runner(failing, MappingPolicy(maximum_retry_attempts=2, backoff_s=0.001), destination)
    runner._deliver(_records(4))
    assert calls == [4, 4, 4]  # the first invocation and two retries
    assert destination.sent == [([0, 1, 2, 3], RETRIES_EXHAUSTED, 3)]
    assert runner.stats.sent_to_destination == 4


def test_bisection_isolates_the_record_that_fails_and_delivers_the_rest() -> None:
    delivered: list[int] = []

    def one_bad(payload: dict[str, Any], _context: Any) -> None:
        offsets = [r["offset"] for rs in payload["records"].values() for r in rs]
        if 2 in offsets:
            raise ValueError("record 2 breaks the handler")
        delivered.extend(offsets)

    destination = _Destination()
    runner = _runner(one_bad, MappingPolicy(maximum_retry_attempts=1, bisect=True, backoff_s=0.001), destination)
    runner._deliver(_records(5))
    assert sorted(delivered) == [0, 1, 3, 4]
    assert destination.sent == [([2], RETRIES_EXHAUSTED, 2)]


def test_without_a_destination_a_failing_batch_is_left_to_be_read_again() -> None:
    from trackflow.runner import _RetryLaterError

    def failing(payload: dict[str, Any], _context: Any) -> None:
        raise ConnectionError("not yet")

    runner = _runner(failing, MappingPolicy(on_failure=None, maximum_retry_attempts=1, backoff_s=0.001), None)
    with pytest.raises(_RetryLaterError):  # _process seeks back; run() backs off; nothing is committed or dropped
        runner._deliver(_records(2))
    assert runner.stats.failures == 1 and runner.stats.sent_to_destination == 0


def test_records_older_than_the_maximum_age_go_to_the_destination_without_an_invocation() -> None:
    invoked: list[int] = []
    destination = _Destination()
    runner = _runner(
        lambda payload, _c: invoked.append(1), MappingPolicy(maximum_record_age_s=60, backoff_s=0.001), destination
    )
    runner._deliver(_records(2, timestamp=1_000))
    assert invoked == [] and destination.sent == [([0, 1], RECORD_AGE_EXCEEDED, 0)]
