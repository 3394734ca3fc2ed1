"""Create the events and dead-letter topics when they are missing."""

from __future__ import annotations

import logging
import time

logger = logging.getLogger(__name__)

DEFAULT_PARTITIONS = 4


def ensure_topics(bootstrap_servers: str, topics: dict[str, int], *, timeout_s: float = 15.0) -> list[str]:
    """Create each ``{name: partitions}`` topic that does not exist; return those created."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers.split(","), request_timeout_ms=5000)
            break
        except KafkaError as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"cannot reach Kafka at {bootstrap_servers}: {exc}") from exc
            time.sleep(0.5)
    try:
        existing = set(admin.list_topics())
        missing = [NewTopic(name, parts, 1) for name, parts in topics.items() if name not in existing]
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
        return created
    finally:
        admin.close()
