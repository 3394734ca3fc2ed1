"""The local Kafka trigger: plays the AWS event source mapping's part.

A kafka-python consumer group polls a batch (``batch_size`` records, or fewer
once ``batching_window_s`` has passed since the first, like the mapping's
``BatchSize`` and ``MaximumBatchingWindowInSeconds``), builds the very payload
AWS would send (split where it would pass Lambda's 6 MB), invokes the same
handler, and commits the offsets only after every record of the batch was
handled: ingested, or handed to the failure destination.

A failing batch is treated as the deployed mapping treats it
(:class:`~trackflow.mapping.MappingPolicy`, with the stack's parameters and
defaults): split in halves first when bisection is on; with an on-failure
destination, retried with a growing back-off and given up after
``MaximumRetryAttempts`` retries, written there in AWS's invocation-record
format, and records older than ``MaximumRecordAgeInSeconds`` go there without
an invocation; without one, left uncommitted and read again, after a growing
back-off, until it succeeds. A stop request during
the retries leaves the batch uncommitted: the next consumer reads it again.
When the consumer itself fails (broker restart, lost group) it is closed and
built anew.

A broker that restarts empty (the embedded one keeps nothing) forgets the
group's committed offsets while this consumer still sits at its old position,
beyond the end of the new, empty log, and kafka-python then waits there for
ever. So when idle the runner compares the committed offsets with the ones it
committed itself; if they went back, it builds a new consumer, which starts at
the committed offset, or at 0 where the group has none.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kafka import ConsumerRebalanceListener

from chalicelib.kafka.records import (
    LAMBDA_PAYLOAD_LIMIT,
    RECORD_AGE_EXCEEDED,
    RETRIES_EXHAUSTED,
    build_event,
    encode_record,
    split_by_size,
)
from chalicelib.kafka.security import KafkaSecurity
from chalicelib.metrics import set_lag
from trackflow.mapping import FailureDestination, MappingPolicy

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], Any], Any]

# Records per invocation. Rows per insert dominate ingest cost (an insert carries
# fixed engine work). A batch is also split where its payload would pass 6 MB.
DEFAULT_BATCH_SIZE = 2000
DEFAULT_BATCHING_WINDOW_S = 0.25
DEFAULT_GROUP_ID = "trackflow-ingest"
DEFAULT_SESSION_TIMEOUT_MS = 6000  # a rebalance costs about half of it on the embedded broker
MAX_BACKOFF_S = 10.0
REWIND_CHECK_INTERVAL_S = 2.0


def _encoded(records: list[Any]) -> list[dict[str, object]]:
    return [
        encode_record(
            topic=r.topic,
            partition=r.partition,
            offset=r.offset,
            timestamp=r.timestamp,
            key=r.key,
            value=r.value,
            headers=r.headers or (),
        )
        for r in records
    ]


def mapping_payload(records: list[Any], *, bootstrap_servers: str) -> dict[str, Any]:
    """The payload the AWS event source mapping sends for these consumed kafka-python records."""
    return build_event(_encoded(records), bootstrap_servers=bootstrap_servers)


def mapping_payloads(
    records: list[Any], *, bootstrap_servers: str, limit: int = LAMBDA_PAYLOAD_LIMIT
) -> list[dict[str, Any]]:
    """The payloads the mapping sends for a polled batch: as many as keep each under Lambda's 6 MB limit."""
    return [
        build_event(run, bootstrap_servers=bootstrap_servers) for run in split_by_size(_encoded(records), limit=limit)
    ]


@dataclass
class LambdaContext:
    """The parts of a Lambda context object handlers commonly read."""

    function_name: str = "ingest"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    timeout_ms: int = 60_000
    started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self.timeout_ms - int((time.monotonic() - self.started) * 1000))


# How long one poll may wait while the consumer joins its group.
JOIN_WAIT_S = 15.0
# A consumer never assigned a partition for this long is rebuilt, the second
# time under a new group name: after a restart the embedded broker can keep a
# dead member in the group and fail every SyncGroup of it for ever. The new
# group has no committed offsets and starts at 0; what is stored again counts
# once. (A runner beside more runners than partitions gets a new group too.)
JOIN_STUCK_S = 30.0
# Commits and offset lookups give up after this (kafka-python waits for ever by
# default): a broker outage then rebuilds the consumer and the loop notices stop().
KAFKA_CALL_TIMEOUT_MS = 10_000
LAG_CHECK_INTERVAL_S = 1.0


@dataclass
class RunnerStats:
    batches: int = 0
    records: int = 0
    failures: int = 0
    consumer_restarts: int = 0
    last_error: str | None = None
    sent_to_destination: int = 0  # records handed to the on-failure destination


class _StoppedError(Exception):
    """Stop was asked while a batch was being retried: leave it uncommitted."""


class _RetryLaterError(Exception):
    """No destination to give a batch up to: leave it uncommitted, and read it again."""


class _Assignments(ConsumerRebalanceListener):
    """Notes partitions newly assigned to the consumer (kafka-python calls this on its IO thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fresh: set[Any] = set()

    def on_partitions_revoked(self, revoked: Any) -> None:
        with self._lock:
            self._fresh.difference_update(revoked)

    def on_partitions_assigned(self, assigned: Any) -> None:
        with self._lock:
            self._fresh.update(assigned)

    def take(self) -> set[Any]:
        with self._lock:
            fresh, self._fresh = self._fresh, set()
        return fresh


class TriggerRunner:
    """Consume ``topic`` as group ``group_id`` and feed batches to ``handler``."""

    def __init__(
        self,
        handler: Handler,
        *,
        bootstrap_servers: str,
        topic: str,
        group_id: str = DEFAULT_GROUP_ID,
        batch_size: int = DEFAULT_BATCH_SIZE,
        batching_window_s: float = DEFAULT_BATCHING_WINDOW_S,
        session_timeout_ms: int = DEFAULT_SESSION_TIMEOUT_MS,
        on_consumer_error: Callable[[], None] | None = None,
        security: KafkaSecurity | None = None,
        lag_from_end_offsets: bool = True,
        policy: MappingPolicy | None = None,
        destination: FailureDestination | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self._handler = handler
        self._bootstrap = bootstrap_servers
        self._topic = topic
        self._group_id = group_id
        self._batch_size = batch_size
        self._window_s = batching_window_s
        self._session_timeout_ms = session_timeout_ms
        self._on_consumer_error = on_consumer_error
        self._security = security or KafkaSecurity()
        self._lag_from_end_offsets = lag_from_end_offsets
        self._lag_checked = 0.0
        self._end_offsets: dict[Any, int] = {}
        self._stop = threading.Event()
        self._consumer: Any = None
        self._committed: dict[Any, int] = {}
        self._last_rewind_check = 0.0
        self._assignments = _Assignments()
        self._joining_since: float | None = None
        self._stuck_joins = 0
        self._group_moves = 0
        self._idle_poll_started = 0.0  # when the last poll that found nothing (and nothing uncommitted) began
        # Without a policy: retry for ever, as a mapping without a destination does.
        self._policy = policy or MappingPolicy(on_failure=None)
        self._destination = destination if self._policy.on_failure else None
        self.stats = RunnerStats()

    # -- consumer lifecycle -------------------------------------------------
    def _new_consumer(self) -> Any:
        from kafka import KafkaConsumer

        consumer = KafkaConsumer(
            bootstrap_servers=self._bootstrap.split(","),
            group_id=self.group_id,
            client_id=f"{self._group_id}-runner",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=self._session_timeout_ms,
            heartbeat_interval_ms=max(500, self._session_timeout_ms // 3),
            max_poll_records=self._batch_size,
            max_poll_interval_ms=1_800_000,  # a batch's retries may take minutes; stay in the group meanwhile
            fetch_max_wait_ms=100,
            reconnect_backoff_max_ms=1000,
            **self._security.kafka_python(),
        )
        consumer.subscribe([self._topic], listener=self._assignments)
        return consumer

    def _drop_consumer(self) -> None:
        consumer, self._consumer = self._consumer, None
        self._committed.clear()
        if consumer is not None:
            try:
                consumer.close(autocommit=False)
            except Exception:  # a broken consumer may fail to close; it is gone either way
                logger.debug("closing a failed consumer raised", exc_info=True)

    # -- one batch ----------------------------------------------------------
    def _poll_batch(self, consumer: Any) -> list[Any]:
        records: list[Any] = []
        deadline: float | None = None
        while len(records) < self._batch_size and not self._stop.is_set():
            if deadline is not None:
                wait = deadline - time.monotonic()
            elif not consumer.assignment():
                # Joining the group: stay inside one poll until it completes. A join that
                # outlasts a short poll is thrown away and restarted by kafka-python 3.0
                # on the next poll, and the embedded broker takes seconds to answer one.
                wait = JOIN_WAIT_S
            else:
                wait = 0.5
            if wait <= 0:
                break
            polled = consumer.poll(timeout_ms=int(wait * 1000), max_records=self._batch_size - len(records))
            for partition_records in polled.values():
                records.extend(partition_records)
            records = self._start_fresh_partitions(consumer, records)
            if records and deadline is None:
                if self._window_s <= 0:
                    break
                deadline = time.monotonic() + self._window_s
            elif not records:
                break  # nothing arrived: go round again (and notice a stop request)
        return records

    def _start_fresh_partitions(self, consumer: Any, records: list[Any]) -> list[Any]:
        """A newly assigned partition without a committed offset starts at 0, not where the broker says.

        The embedded broker answers offset lookups wrongly after a restart, so
        the reset policy could start a rebuilt consumer behind records nobody
        read. Records already fetched for such a partition are dropped (they
        are fetched again from 0). Where 0 is gone (retention), the fetch is
        out of range and ``auto_offset_reset=earliest`` takes over.
        """
        restarted = set()
        for tp in self._assignments.take():
            if consumer.committed(tp, timeout_ms=KAFKA_CALL_TIMEOUT_MS) is None:
                logger.info("%s-%d has no committed offset: starting at 0", tp.topic, tp.partition)
                consumer.seek(tp, 0)
                restarted.add((tp.topic, tp.partition))
        if not restarted:
            return records
        return [r for r in records if (r.topic, r.partition) not in restarted]

    def payloads(self, records: list[Any]) -> list[dict[str, Any]]:
        """The AWS mapping payloads for consumed kafka-python records, each under Lambda's 6 MB."""
        return mapping_payloads(records, bootstrap_servers=self._bootstrap)

    def _process(self, consumer: Any, records: list[Any]) -> bool:
        """Invoke the handler; commit on success, rewind on failure. True when committed."""
        from kafka import TopicPartition
        from kafka.structs import OffsetAndMetadata

        first: dict[Any, int] = {}
        last: dict[Any, int] = {}
        for r in records:
            tp = TopicPartition(r.topic, r.partition)
            first.setdefault(tp, r.offset)
            last[tp] = r.offset
        try:
            self._deliver(_encoded(records))
        except _RetryLaterError:
            logger.warning("ingest failed for %d records, will retry: %s", len(records), self.stats.last_error)
            for tp, offset in first.items():
                consumer.seek(tp, offset)
            return False
        except Exception as exc:  # a stop request, or the failure destination refusing: read the batch again
            self.stats.last_error = f"{exc.__class__.__name__}: {exc}"
            logger.warning("batch of %d records left uncommitted: %s", len(records), self.stats.last_error)
            for tp, offset in first.items():
                consumer.seek(tp, offset)
            return False
        consumer.commit(
            {tp: OffsetAndMetadata(offset + 1, "", -1) for tp, offset in last.items()}, timeout_ms=KAFKA_CALL_TIMEOUT_MS
        )
        self._committed.update({tp: offset + 1 for tp, offset in last.items()})
        self.stats.batches += 1
        self.stats.records += len(records)
        return True

    def _invoke(self, batch: list[dict[str, object]]) -> None:
        for run in split_by_size(batch):
            self._handler(build_event(run, bootstrap_servers=self._bootstrap), LambdaContext())

    def _give_up(self, batch: list[dict[str, object]], *, condition: str, invocations: int, error: str) -> None:
        assert self._destination is not None
        self._destination.send(batch, condition=condition, invocations=invocations, error=error)
        self.stats.sent_to_destination += len(batch)
        logger.error("%d records sent to %s (%s): %s", len(batch), self._policy.on_failure, condition, error)

    def _deliver(self, records: list[dict[str, object]]) -> None:
        """Invoke the handler until every record is ingested or given to the destination, as the mapping does."""
        policy = self._policy
        pending: list[tuple[list[dict[str, object]], int]] = [(records, 0)]
        while pending:
            batch, retries = pending.pop(0)
            if self._destination is not None and policy.maximum_record_age_s >= 0:
                now = int(time.time() * 1000)
                old = [r for r in batch if policy.expired(int(str(r["timestamp"])), now)]
                if old:
                    self._give_up(old, condition=RECORD_AGE_EXCEEDED, invocations=retries, error="record too old")
                    batch = [r for r in batch if r not in old]
                    if not batch:
                        continue
            try:
                self._invoke(batch)
                continue
            except Exception as exc:
                self.stats.failures += 1
                self.stats.last_error = f"{exc.__class__.__name__}: {exc}"
            if self._stop.is_set():
                raise _StoppedError(self.stats.last_error)
            if policy.bisect and len(batch) > 1:  # halves are tried at once and keep the retries used
                half = len(batch) // 2
                pending[:0] = [(batch[:half], retries), (batch[half:], retries)]
                continue
            retries += 1
            allowed = policy.retries if self._destination is not None else None
            if allowed is None:  # retried until it succeeds: read it again from Kafka, after run()'s back-off
                raise _RetryLaterError(self.stats.last_error)
            if retries > allowed:
                self._give_up(batch, condition=RETRIES_EXHAUSTED, invocations=retries, error=self.stats.last_error)
                continue
            logger.warning(
                "ingest failed for %d records (retry %d of %d): %s", len(batch), retries, allowed, self.stats.last_error
            )
            if self._stop.wait(policy.backoff(retries)):
                raise _StoppedError(self.stats.last_error)
            pending.insert(0, (batch, retries))

    def _check_rewound(self, consumer: Any) -> None:
        """Rebuild the consumer when the group's committed offsets went behind ours (broker lost its state).

        Seeking back is not enough: after the embedded broker restarted empty
        and recreated the topic, a kafka-python consumer can sit on its old
        fetch state and receive nothing, without an error (seen in about one
        run in ten). A new consumer starts at the committed offset, or at 0
        where there is none (:meth:`_start_fresh_partitions`).
        """
        now = time.monotonic()
        if not self._committed or now - self._last_rewind_check < REWIND_CHECK_INTERVAL_S:
            return
        self._last_rewind_check = now
        for tp in list(consumer.assignment()):
            ours = self._committed.get(tp)
            if ours is None:
                continue
            theirs = consumer.committed(tp, timeout_ms=KAFKA_CALL_TIMEOUT_MS)
            if theirs is not None and theirs >= ours:
                continue
            raise RuntimeError(
                f"committed offset of {tp.topic}-{tp.partition} went back from {ours} to {theirs} "
                "(the broker lost its state?); rebuilding the consumer"
            )

    # -- the loop -----------------------------------------------------------
    def run_once(self) -> int:
        """Poll one batch and process it; return how many records were committed."""
        if self._consumer is None:
            self._consumer = self._new_consumer()
            self._joining_since = time.monotonic()
        poll_started = time.monotonic()
        records = self._poll_batch(self._consumer)
        self._check_joined(self._consumer)
        if not records:
            self._check_rewound(self._consumer)
            if self._report_lag(self._consumer) == 0 and self._consumer.assignment():
                self._idle_poll_started = poll_started
            return 0
        done = len(records) if self._process(self._consumer, records) else 0
        self._report_lag(self._consumer)
        return done

    @property
    def group_id(self) -> str:
        """The consumer group in use: the configured one, or a successor after it got stuck."""
        return self._group_id if self._group_moves == 0 else f"{self._group_id}.{self._group_moves}"

    def _check_joined(self, consumer: Any) -> None:
        """Raise (so the consumer is rebuilt) when it has waited too long for its first partitions."""
        if self._joining_since is None:
            return
        if consumer.assignment():
            self._joining_since = None
            self._stuck_joins = 0
            return
        if time.monotonic() - self._joining_since <= JOIN_STUCK_S:
            return
        self._stuck_joins += 1
        if self._stuck_joins >= 2:
            self._stuck_joins = 0
            self._group_moves += 1
            logger.warning(
                "consumer group stuck in a rebalance on the broker (the embedded broker does this after a "
                "restart); continuing as group %s from offset 0: events stored again count once",
                self.group_id,
            )
        raise RuntimeError(f"no partition assigned within {JOIN_STUCK_S:g} s of joining; rejoining")

    def _report_lag(self, consumer: Any) -> int:
        """Set the lag gauge per partition; return the lag behind the last fetch (what draining waits on).

        The gauge is the partition's end offset minus what we committed, as the
        AWS mapping's ``OffsetLag``: records that arrived since the last fetch
        count too. End offsets are asked for at most once a second; in between,
        and where they are not asked for (the embedded broker answers them
        wrongly: ``lag_from_end_offsets=False``), the high watermark of the last
        fetch stands in.
        """
        assigned = consumer.assignment()
        now = time.monotonic()
        if self._lag_from_end_offsets and assigned and now - self._lag_checked >= LAG_CHECK_INTERVAL_S:
            self._lag_checked = now
            try:
                self._end_offsets.update(consumer.end_offsets(list(assigned), timeout_ms=KAFKA_CALL_TIMEOUT_MS))
            except Exception:  # a broker outage: the loop deals with it; the gauge uses what it knows
                logger.debug("end offsets unavailable", exc_info=True)
        behind_fetch = 0
        for tp in assigned:
            ours, high = self._committed.get(tp), consumer.highwater(tp)
            if ours is None or high is None:
                continue
            behind_fetch += max(0, high - ours)
            end = max(high, self._end_offsets.get(tp) or 0)
            set_lag(tp.topic, tp.partition, max(0, end - ours))
        return behind_fetch

    def drain(self, timeout_s: float, *, progress: Callable[[str], None] | None = None) -> bool:
        """Wait (while :meth:`run` goes on in its thread) until a poll begun after this call found nothing
        left to ingest; False when ``timeout_s`` passed first."""
        asked = time.monotonic()
        deadline = asked + timeout_s
        last_report = asked
        while self._idle_poll_started <= asked:
            now = time.monotonic()
            if now > deadline:
                return False
            if progress is not None and now - last_report >= 1.0:
                progress(f"ingesting what Kafka holds: {self.stats.records} record(s) so far")
                last_report = now
            self._stop.wait(0.05)
        return True

    def run(self) -> None:
        """Loop until :meth:`stop`; never dies of a Kafka or handler error."""
        backoff = 0.25
        while not self._stop.is_set():
            try:
                failures = self.stats.failures
                self.run_once()
                if self.stats.failures > failures:
                    self._stop.wait(backoff)
                    backoff = min(MAX_BACKOFF_S, backoff * 2)
                else:
                    backoff = 0.25
            except Exception as exc:
                # The consumer itself broke (broker gone, group lost, commit refused).
                self.stats.consumer_restarts += 1
                self.stats.last_error = f"{exc.__class__.__name__}: {exc}"
                logger.warning("consumer error, rebuilding it: %s", self.stats.last_error)
                self._drop_consumer()
                self._stop.wait(backoff)
                backoff = min(MAX_BACKOFF_S, backoff * 2)
                if self._on_consumer_error is not None and not self._stop.is_set():
                    try:
                        self._on_consumer_error()
                    except Exception:
                        logger.debug("on_consumer_error hook failed", exc_info=True)
        self._drop_consumer()

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        """Leave the group and close the consumer, for callers that drive :meth:`run_once` themselves.

        A consumer left open keeps heartbeating: the group's next rebalance would
        wait for it (up to the poll interval, 5 minutes) before anyone else joins.
        """
        self._stop.set()
        self._drop_consumer()

    def start_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="trigger-runner", daemon=True)
        thread.start()
        return thread
