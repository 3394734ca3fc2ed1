"""chalicelib.kafka.diagnosis.replica_shortfall: why acks=all writes fail, read from a topic's metadata."""

from __future__ import annotations

from types import SimpleNamespace

from chalicelib.kafka.diagnosis import replica_shortfall


def _topic(*partitions: tuple[int, int, int]) -> SimpleNamespace:
    """(leader, in-sync replicas, replicas) per partition, as confluent's TopicMetadata holds them."""
    return SimpleNamespace(
        topic="trackflow.events",
        partitions={
            n: SimpleNamespace(leader=leader, isrs=list(range(isr)), replicas=list(range(copies)))
            for n, (leader, isr, copies) in enumerate(partitions)
        },
    )


def test_a_healthy_topic_explains_nothing() -> None:
    assert replica_shortfall(_topic((1, 3, 3), (2, 2, 3)), 2) is None


def test_too_few_in_sync_replicas_is_named_as_kafka_names_it() -> None:
    reason = replica_shortfall(_topic((1, 3, 3), (2, 1, 3), (3, 1, 3)), 2)
    assert reason is not None and reason.startswith("NOT_ENOUGH_REPLICAS: partition 1 of trackflow.events")
    assert "1 in-sync replica(s) of 3" in reason and "(and 1 more)" in reason and "min.insync.replicas=2" in reason


def test_a_partition_without_a_leader_says_its_brokers_are_down() -> None:
    assert replica_shortfall(_topic((1, 3, 3), (-1, 0, 3)), 2) == (
        "partitions [1] of trackflow.events have no leader: their brokers are down"
    )
