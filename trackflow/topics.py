"""The events and dead-letter topics: create them when missing, and say what a cluster holds."""

from __future__ import annotations

import logging
import time
from typing import Any

from chalicelib.kafka_security import KafkaSecurity

logger = logging.getLogger(__name__)

DEFAULT_PARTITIONS = 4


def _admin(bootstrap_servers: str, security: KafkaSecurity | None, timeout_ms: int) -> Any:
    """A kafka-python admin client for the cluster, with its security settings."""
    from kafka import KafkaAdminClient

    return KafkaAdminClient(
        bootstrap_servers=bootstrap_servers.split(","),
        request_timeout_ms=timeout_ms,
        **(security or KafkaSecurity()).kafka_python(),
    )


def ensure_topics(
    bootstrap_servers: str,
    topics: dict[str, int],
    *,
    timeout_s: float = 15.0,
    replication_factor: int = 1,
    retention_ms: int | None = None,
    security: KafkaSecurity | None = None,
) -> list[str]:
    """Create each ``{name: partitions}`` topic that does not exist; return those created."""
    from kafka.admin import NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin = _admin(bootstrap_servers, security, 5000)
            break
        except KafkaError as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"cannot reach Kafka at {bootstrap_servers}: {exc}") from exc
            time.sleep(0.5)
    try:
        existing = set(admin.list_topics())
        configs = {} if retention_ms is None else {"retention.ms": str(retention_ms)}
        missing = [
            NewTopic(name, parts, replication_factor, topic_configs=configs)
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
            logger.info("created topics %s", ", ".join(created))
            # A cluster announces a new topic a moment after creating it: wait until it lists it.
            while not set(created) <= set(admin.list_topics()) and time.monotonic() < deadline:
                time.sleep(0.2)
        return created
    finally:
        admin.close()


def partition_counts(
    bootstrap_servers: str, names: list[str], *, timeout_s: float = 10.0, security: KafkaSecurity | None = None
) -> dict[str, int]:
    """How many partitions each named topic has; a missing topic is left out. Raises when Kafka can't be reached."""
    from kafka.errors import KafkaError

    try:
        admin = _admin(bootstrap_servers, security, int(timeout_s * 1000))
    except KafkaError as exc:
        raise RuntimeError(f"cannot reach Kafka at {bootstrap_servers}: {exc}") from exc
    try:
        existing = set(admin.list_topics())
        found = [name for name in names if name in existing]
        if not found:
            return {}
        return {topic["name"]: len(topic["partitions"]) for topic in admin.describe_topics(found)}
    finally:
        admin.close()
