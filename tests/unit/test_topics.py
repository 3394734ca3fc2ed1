"""trackflow.topics without a broker: describing topics created a moment ago."""

from __future__ import annotations

from typing import Any

import pytest

from trackflow import topics
from trackflow.topics import TopicState, describe_created


def _state(name: str) -> TopicState:
    return TopicState(
        name=name, partitions=4, replication_factor=3, min_insync=2, retention_ms=None, under_replicated=0
    )


def test_topics_a_broker_does_not_know_yet_are_asked_for_again_until_all_are_described(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers = [{"ev": _state("ev")}, {"ev": _state("ev"), "dlq": _state("dlq")}]
    asked: list[list[str]] = []

    def describe(bootstrap_servers: str, names: list[str], **_: Any) -> dict[str, TopicState]:
        asked.append(names)
        return answers[min(len(asked) - 1, len(answers) - 1)]

    monkeypatch.setattr(topics, "describe_topics", describe)
    monkeypatch.setattr(topics.time, "sleep", lambda _: None)
    assert set(describe_created("k:9092", ["ev", "dlq"])) == {"ev", "dlq"}
    assert len(asked) == 2


def test_a_topic_still_unknown_after_the_wait_is_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(topics, "describe_topics", lambda *_, **__: {"ev": _state("ev")})
    monkeypatch.setattr(topics.time, "sleep", lambda _: None)
    assert set(describe_created("k:9092", ["ev", "dlq"], wait_s=0)) == {"ev"}
