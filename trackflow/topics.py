"""The topics TrackFlow uses: created before anything produces, as production needs them, and checked.

:func:`ensure_topics` creates each missing topic with replication factor
``min(3, brokers)`` and ``min.insync.replicas = min(2, RF)`` unless told
otherwise (MSK's defaults: three copies, two in sync before a write is
acknowledged). With ``verify`` it also refuses an existing topic with fewer
partitions or fewer copies than wanted, saying how to fix it: a broker with
automatic topic creation on makes a one-partition, one-copy topic the moment
something produces to it, and ``acks=all`` against one copy survives nothing.

:func:`describe_topics` says what the cluster holds (partitions, replication,
min ISR, retention, under-replicated partitions), for ``trackflow doctor``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from chalicelib.kafka.security import KafkaSecurity

logger = logging.getLogger(__name__)

DEFAULT_PARTITIONS = 4
DEFAULT_RETENTION_MS = 7 * 24 * 3_600_000
WANTED_COPIES = 3
WANTED_IN_SYNC = 2


class TopicMismatchError(RuntimeError):
    """An existing topic is not what TrackFlow needs; the message says what differs and what to do."""


@dataclass(frozen=True)
class TopicState:
    """What the cluster holds of one topic."""

    name: str
    partitions: int
    replication_factor: int
    min_insync: int | None
    retention_ms: int | None
    under_replicated: int  # partitions with fewer in-sync replicas than copies

    def describe(self) -> str:
        """One line for people: partitions, copies, min ISR, retention, what is under-replicated."""
        parts = [f"{self.partitions} partition(s)", f"replication factor {self.replication_factor}"]
        parts.append(f"min.insync.replicas {self.min_insync if self.min_insync is not None else '?'}")
        if self.retention_ms is not None:
            parts.append(f"retention {self.retention_ms / 3_600_000:g} h")
        if self.under_replicated:
            parts.append(f"{self.under_replicated} partition(s) under-replicated")
        return ", ".join(parts)


def _admin(bootstrap_servers: str, security: KafkaSecurity | None, timeout_ms: int) -> Any:
    """A kafka-python admin client for the cluster, with its security settings."""
    from kafka import KafkaAdminClient

    return KafkaAdminClient(
        bootstrap_servers=bootstrap_servers.split(","),
        request_timeout_ms=timeout_ms,
        **(security or KafkaSecurity()).kafka_python(),
    )


def _connect(bootstrap_servers: str, security: KafkaSecurity | None, deadline: float) -> Any:
    from kafka.errors import KafkaError

    while True:
        try:
            return _admin(bootstrap_servers, security, 5000)
        except KafkaError as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"cannot reach Kafka at {bootstrap_servers}: {exc}") from exc
            time.sleep(0.5)


def topic_plan(settings: Any, *, partitions: int, failure_topic: str | None) -> dict[str, int]:
    """Every topic a deployment needs, with its partitions: events, dead letters, the mapping's failure topic."""
    plan = {settings.events_topic: partitions, settings.dlq_topic: 1}
    if failure_topic:
        plan[failure_topic] = 1
    return plan


def replication_for(brokers: int, replication_factor: int | None, min_insync: int | None) -> tuple[int, int]:
    """The copies and in-sync replicas a new topic gets on a cluster of ``brokers``."""
    copies = replication_factor or min(WANTED_COPIES, brokers)
    return copies, min_insync or min(WANTED_IN_SYNC, copies)


def ensure_topics(
    bootstrap_servers: str,
    topics: dict[str, int],
    *,
    timeout_s: float = 15.0,
    replication_factor: int | None = None,
    min_insync: int | None = None,
    retention_ms: int | None = None,
    security: KafkaSecurity | None = None,
    verify: bool = False,
) -> list[str]:
    """Create each ``{name: partitions}`` topic that does not exist; return those created.

    ``verify``: refuse (TopicMismatchError) an existing topic with fewer
    partitions or copies than a new one would get.
    """
    from kafka.admin import NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    deadline = time.monotonic() + timeout_s
    admin = _connect(bootstrap_servers, security, deadline)
    try:
        brokers = len(admin.describe_cluster()["brokers"])
        copies, in_sync = replication_for(brokers, replication_factor, min_insync)
        if copies > brokers:
            raise TopicMismatchError(
                f"replication factor {copies} needs {copies} brokers; {bootstrap_servers} has {brokers}"
            )
        existing = set(admin.list_topics())
        if verify:
            _verify(admin, {name: parts for name, parts in topics.items() if name in existing}, copies)
        configs = {} if retention_ms is None else {"retention.ms": str(retention_ms)}
        if copies > 1:
            configs["min.insync.replicas"] = str(in_sync)
        missing = [
            NewTopic(name, parts, copies, topic_configs=configs)
            for name, parts in topics.items()
            if name not in existing
        ]
        created: list[str] = []
        for topic in missing:
            while True:  # a busy broker may time out once; retry until the deadline
                try:
                    admin.create_topics([topic])
                    created.append(topic.name)
                    break
                except TopicAlreadyExistsError:
                    break
                except KafkaError as exc:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"cannot create topic {topic.name} on {bootstrap_servers}: {exc}") from exc
                    logger.debug("create_topics failed, retrying: %s", exc)
                    time.sleep(0.5)
        if created:
            logger.info("created topics %s (replication factor %d)", ", ".join(created), copies)
            # A cluster announces a new topic a moment after creating it: wait until it lists it.
            while not set(created) <= set(admin.list_topics()) and time.monotonic() < deadline:
                time.sleep(0.2)
        return created
    finally:
        admin.close()


def _verify(admin: Any, wanted: dict[str, int], copies: int) -> None:
    if not wanted:
        return
    for topic in admin.describe_topics(list(wanted)):
        name, partitions = topic["name"], topic["partitions"]
        found_copies = min((len(p["replica_nodes"]) for p in partitions), default=0)
        problems = []
        if len(partitions) < wanted[name]:
            problems.append(f"{len(partitions)} partition(s), not {wanted[name]}")
        if found_copies < copies:
            problems.append(f"replication factor {found_copies}, not {copies}")
        if problems:
            raise TopicMismatchError(
                f"topic {name} exists with {' and '.join(problems)} (a broker that creates topics on first use "
                "makes them so). Recreate it: stop the producers, delete it (kafka-topics.sh --delete --topic "
                f"{name}) and run this again; or add partitions (kafka-topics.sh --alter --partitions N)"
            )


def describe_topics(
    bootstrap_servers: str, names: list[str], *, timeout_s: float = 10.0, security: KafkaSecurity | None = None
) -> dict[str, TopicState]:
    """What the cluster holds of each named topic; a missing one is left out. Raises when Kafka can't be reached.

    Asked with librdkafka's admin client, which goes on to another broker when
    one is down (a cluster losing a broker is when this matters).
    """
    from confluent_kafka.admin import AdminClient, ConfigResource

    from chalicelib.kafka.diagnosis import ClientErrors

    security = security or KafkaSecurity()
    # librdkafka's complaints go here, not to stderr: refused credentials and TLS
    # failures become the error's words; a broker being down is what this is asked about.
    errors = ClientErrors(security, log=False)  # the reason goes into the error raised
    admin = AdminClient({"bootstrap.servers": bootstrap_servers, **errors.config(), **security.confluent()})
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except Exception as exc:  # KafkaException: nothing answered
        admin.poll(0)  # deliver the error callbacks librdkafka still holds
        reason = errors.reason()
        if reason and ("authentication failed" in reason or "TLS" in reason or "KAFKA_SECURITY_PROTOCOL" in reason):
            raise RuntimeError(f"Kafka at {bootstrap_servers}: {reason}") from exc
        raise RuntimeError(f"cannot reach Kafka at {bootstrap_servers}: {reason or exc}") from exc
    found = [name for name in names if name in metadata.topics and metadata.topics[name].error is None]
    configs: dict[str, dict[str, Any]] = {}
    if found:
        resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in found]
        try:
            for resource, future in admin.describe_configs(resources).items():
                entries = future.result(timeout=timeout_s)
                configs[resource.name] = {name: entry.value for name, entry in entries.items()}
        except Exception:  # a broker that does not describe configs: leave them unknown
            logger.debug("describe_configs failed", exc_info=True)
    states = {}
    for name in found:
        partitions = list(metadata.topics[name].partitions.values())
        config = configs.get(name, {})
        states[name] = TopicState(
            name=name,
            partitions=len(partitions),
            replication_factor=min((len(p.replicas) for p in partitions), default=0),
            min_insync=_config_int(config, "min.insync.replicas"),
            retention_ms=_config_int(config, "retention.ms"),
            under_replicated=sum(1 for p in partitions if len(p.isrs) < len(p.replicas)),
        )
    return states


def describe_created(
    bootstrap_servers: str, names: list[str], *, security: KafkaSecurity | None = None, wait_s: float = 15.0
) -> dict[str, TopicState]:
    """:func:`describe_topics` right after the topics were made: the broker that answers may not know a
    topic the controller created a moment ago (the news reaches each broker in turn), so it asks again
    for up to ``wait_s`` until every one is described. What is still missing then is left out."""
    deadline = time.monotonic() + wait_s
    while True:
        states = describe_topics(bootstrap_servers, names, security=security)
        if set(names) <= set(states) or time.monotonic() >= deadline:
            return states
        time.sleep(0.5)


def _config_int(config: dict[str, Any], name: str) -> int | None:
    """A numeric topic setting of a describe_configs answer, or None."""
    value = config.get(name)
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def partition_counts(
    bootstrap_servers: str, names: list[str], *, timeout_s: float = 10.0, security: KafkaSecurity | None = None
) -> dict[str, int]:
    """How many partitions each named topic has; a missing topic is left out. Raises when Kafka can't be reached."""
    states = describe_topics(bootstrap_servers, names, timeout_s=timeout_s, security=security)
    return {name: state.partitions for name, state in states.items()}
