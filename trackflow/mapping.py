"""What the deployed Kafka mapping does with a failing batch, for the local trigger to do the same.

:class:`MappingPolicy` holds the mapping's failure settings under the stack
parameters' names and defaults (``trackflow.stack.parameters``: one source for
both): ``MaximumRetryAttempts``, ``MaximumRecordAgeInSeconds``,
``BisectBatchOnFunctionError`` and ``OnFailureDestination``. The local tooling
reads them once from ``TRACKFLOW_MAXIMUM_RETRY_ATTEMPTS``,
``TRACKFLOW_MAXIMUM_RECORD_AGE``, ``TRACKFLOW_BISECT_BATCH_ON_ERROR`` and
``TRACKFLOW_ON_FAILURE_DESTINATION`` (:meth:`MappingPolicy.from_env`).

As AWS does: without a destination a batch is retried until it succeeds;
with one, at most ``MaximumRetryAttempts`` times (an infinite setting becomes
10), and records older than ``MaximumRecordAgeInSeconds`` go straight there.
The destinations (:func:`destination_for`) write AWS's invocation record
(:func:`chalicelib.kafka.records.failure_record`): ``kafka://TOPIC`` produces one
message per failed record to that topic; an S3 bucket ARN puts one object per
failed batch under ``aws/lambda/<mapping>/<topic>-<partition>/YYYY/MM/DD/``.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from chalicelib.kafka.records import failure_record
from chalicelib.kafka.security import KafkaSecurity
from trackflow.stack.parameters import (
    DEFAULT_BISECT,
    DEFAULT_FAILURE_DESTINATION,
    DEFAULT_MAXIMUM_RECORD_AGE_S,
    DEFAULT_MAXIMUM_RETRY_ATTEMPTS,
)

CAPPED_RETRIES = 10  # what AWS applies to infinite retries when there is a destination
LOCAL_FUNCTION_ARN = "arn:aws:lambda:local:000000000000:function:trackflow-ingest"
DEFAULT_BACKOFF_S = 0.5
DEFAULT_BACKOFF_MAX_S = 10.0


class ConfigurationError(ValueError):
    """A mapping setting is malformed; the message names the variable."""


@dataclass(frozen=True)
class MappingPolicy:
    """The mapping's failure handling (the template's parameters) and the local retry back-off."""

    maximum_retry_attempts: int = DEFAULT_MAXIMUM_RETRY_ATTEMPTS
    maximum_record_age_s: int = DEFAULT_MAXIMUM_RECORD_AGE_S
    bisect: bool = DEFAULT_BISECT == "true"
    on_failure: str | None = DEFAULT_FAILURE_DESTINATION
    backoff_s: float = DEFAULT_BACKOFF_S
    backoff_max_s: float = DEFAULT_BACKOFF_MAX_S

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> MappingPolicy:
        env = os.environ if env is None else env

        def number(name: str, default: float) -> float:
            raw = env.get(name, "").strip()
            try:
                return float(raw) if raw else default
            except ValueError:
                raise ConfigurationError(f"{name}={raw!r} is not a number") from None

        bisect = env.get("TRACKFLOW_BISECT_BATCH_ON_ERROR", "").strip().lower()
        if bisect not in ("", "true", "false"):
            raise ConfigurationError(f"TRACKFLOW_BISECT_BATCH_ON_ERROR={bisect!r} must be true or false")
        destination = env.get("TRACKFLOW_ON_FAILURE_DESTINATION")
        policy = cls(
            maximum_retry_attempts=int(number("TRACKFLOW_MAXIMUM_RETRY_ATTEMPTS", DEFAULT_MAXIMUM_RETRY_ATTEMPTS)),
            maximum_record_age_s=int(number("TRACKFLOW_MAXIMUM_RECORD_AGE", DEFAULT_MAXIMUM_RECORD_AGE_S)),
            bisect=(bisect or DEFAULT_BISECT) == "true",
            on_failure=DEFAULT_FAILURE_DESTINATION if destination is None else (destination.strip() or None),
            backoff_s=number("TRACKFLOW_RETRY_BACKOFF", DEFAULT_BACKOFF_S),
            backoff_max_s=number("TRACKFLOW_RETRY_BACKOFF_MAX", DEFAULT_BACKOFF_MAX_S),
        )
        if policy.on_failure and not policy.on_failure.startswith(("kafka://", "arn:aws:s3:::")):
            raise ConfigurationError(
                f"TRACKFLOW_ON_FAILURE_DESTINATION={policy.on_failure!r} must be kafka://TOPIC, an S3 bucket ARN "
                "(arn:aws:s3:::bucket), or empty for none"
            )
        return policy

    @property
    def retries(self) -> int | None:
        """Retries before giving a batch up; None: for ever (no destination)."""
        if not self.on_failure:
            return None
        return CAPPED_RETRIES if self.maximum_retry_attempts < 0 else self.maximum_retry_attempts

    def backoff(self, retries: int) -> float:
        return float(min(self.backoff_max_s, self.backoff_s * 2 ** max(0, retries - 1)))

    def expired(self, timestamp_ms: int, now_ms: int) -> bool:
        """Whether a record is too old to invoke with (only with a destination to put it in)."""
        return (
            bool(self.on_failure)
            and self.maximum_record_age_s >= 0
            and (now_ms - timestamp_ms > self.maximum_record_age_s * 1000)
        )


def destination_topic(target: str | None) -> str | None:
    """The Kafka topic an ``OnFailureDestination`` value names (``kafka://TOPIC``), or None."""
    return target.removeprefix("kafka://") if target and target.startswith("kafka://") else None


def failure_topic(policy: MappingPolicy) -> str | None:
    """The Kafka topic the policy's destination names (it must exist before anything fails), or None."""
    return destination_topic(policy.on_failure)


class FailureDestination(Protocol):
    def send(self, records: Sequence[dict[str, object]], *, condition: str, invocations: int, error: str) -> None: ...


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class KafkaDestination:
    """``kafka://TOPIC``: one message per failed record (its key, AWS's invocation record as the value)."""

    def __init__(self, topic: str, *, bootstrap_servers: str, security: KafkaSecurity | None = None) -> None:
        from chalicelib.kafka.producer import KafkaSender, backend_factory

        self.topic = topic
        self._bootstrap = bootstrap_servers
        self._sender = KafkaSender(
            backend_factory(
                "confluent",
                bootstrap_servers,
                timeout_s=10.0,
                client_id="trackflow-mapping",
                security=security,
            ),
            timeout_s=10.0,
        )

    def send(self, records: Sequence[dict[str, object]], *, condition: str, invocations: int, error: str) -> None:
        from chalicelib.kafka.producer import Message

        request_id = str(uuid.uuid4())
        messages: list[Message] = []
        for record in records:
            document = failure_record(
                [record],
                condition=condition,
                invocations=invocations,
                error=error,
                bootstrap_servers=self._bootstrap,
                function_arn=LOCAL_FUNCTION_ARN,
                request_id=request_id,
                timestamp=_now(),
            )
            key = record.get("key")
            raw_key = None if key is None else base64.b64decode(str(key))
            messages.append((raw_key, json.dumps(document).encode(), [("condition", condition.encode())]))
        self._sender.send(self.topic, messages)

    def close(self) -> None:
        self._sender.close()


class S3Destination:
    """An S3 bucket ARN: one object per failed batch, AWS's invocation record with the payload."""

    def __init__(self, bucket: str, *, bootstrap_servers: str, mapping_id: str, s3: Any | None = None) -> None:
        import boto3

        self.bucket = bucket
        self._bootstrap = bootstrap_servers
        self._mapping_id = mapping_id
        self._s3 = s3 or boto3.client("s3")

    def send(self, records: Sequence[dict[str, object]], *, condition: str, invocations: int, error: str) -> None:
        stamp = datetime.now(UTC)
        document = failure_record(
            records,
            condition=condition,
            invocations=invocations,
            error=error,
            bootstrap_servers=self._bootstrap,
            function_arn=LOCAL_FUNCTION_ARN,
            request_id=str(uuid.uuid4()),
            timestamp=_now(),
        )
        first = records[0]
        key = (
            f"aws/lambda/{self._mapping_id}/{first['topic']}-{first['partition']}/{stamp:%Y/%m/%d}/"
            f"{stamp:%Y-%m-%dT%H.%M.%S}-{uuid.uuid4()}"
        )
        self._s3.put_object(Bucket=self.bucket, Key=key, Body=json.dumps(document).encode())

    def close(self) -> None:
        pass


def destination_for(
    policy: MappingPolicy, *, bootstrap_servers: str, security: KafkaSecurity | None, mapping_id: str
) -> KafkaDestination | S3Destination | None:
    """The destination ``policy.on_failure`` names, or None."""
    target = policy.on_failure
    if not target:
        return None
    if target.startswith("kafka://"):
        return KafkaDestination(target.removeprefix("kafka://"), bootstrap_servers=bootstrap_servers, security=security)
    return S3Destination(
        target.removeprefix("arn:aws:s3:::"), bootstrap_servers=bootstrap_servers, mapping_id=mapping_id
    )
