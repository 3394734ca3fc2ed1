"""Kafka producing with bounded waits, and recovery from a broken client.

:class:`KafkaSender` owns one kafka-python ``KafkaProducer``, created lazily and
replaced whenever a send fails: kafka-python's idempotent producer is
permanently broken once the broker it talked to restarts (``InitProducerId``
fails for good), and a fresh client is the only cure. Every wait is bounded by
``timeout_s`` so the collect endpoint answers 503 instead of hanging.

:func:`visitor_messages` groups a request's events into one message per visitor
(key = anonymous id), which keeps per-visitor order while Kafka handles a
fraction of the messages it would with one message per event.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from chalicelib.errors import ProduceError

logger = logging.getLogger(__name__)

Message = tuple[bytes | None, bytes, list[tuple[str, bytes]]]
ProducerFactory = Callable[[], Any]


def visitor_messages(events: Sequence[dict[str, Any]], *, project_id: str, schema_version: int) -> list[Message]:
    """One Kafka message per anonymous id: ``{"v": 1, "events": [...]}``."""
    by_visitor: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_visitor.setdefault(str(event.get("anonymous_id") or event["event_id"]), []).append(event)
    headers = [("project", project_id.encode()), ("schema", str(schema_version).encode())]
    return [
        (visitor.encode(), orjson.dumps({"v": schema_version, "events": group}), headers)
        for visitor, group in by_visitor.items()
    ]


def kafka_producer_factory(bootstrap_servers: str, *, timeout_s: float, client_id: str) -> ProducerFactory:
    """A factory of kafka-python producers whose every wait fits in ``timeout_s``."""

    def build() -> Any:
        from kafka import KafkaProducer

        timeout_ms = int(timeout_s * 1000)
        return KafkaProducer(
            bootstrap_servers=bootstrap_servers.split(","),
            client_id=client_id,
            acks="all",
            linger_ms=1,
            max_block_ms=timeout_ms,
            request_timeout_ms=timeout_ms,
            bootstrap_timeout_ms=timeout_ms,
            reconnect_backoff_max_ms=1000,
        )

    return build


class KafkaSender:
    """Sends messages to a topic and waits for every acknowledgement, or raises ProduceError."""

    def __init__(self, factory: ProducerFactory, *, timeout_s: float, retry_after: int = 5) -> None:
        self._factory = factory
        self._timeout_s = timeout_s
        self._retry_after = retry_after
        self._producer: Any = None
        self._lock = threading.Lock()

    def _get(self) -> Any:
        with self._lock:
            if self._producer is None:
                try:
                    self._producer = self._factory()
                except Exception as exc:  # kafka-python raises several unrelated types here
                    raise ProduceError(
                        f"Kafka is unreachable ({exc.__class__.__name__}: {exc}); retry later",
                        retry_after=self._retry_after,
                    ) from exc
            return self._producer

    def _discard(self, producer: Any) -> None:
        with self._lock:
            if self._producer is producer:
                self._producer = None
        try:
            producer.close(timeout=0)
        except Exception:  # closing a broken client may fail again; it is gone either way
            logger.debug("closing a failed producer raised", exc_info=True)

    def send(self, topic: str, messages: Sequence[Message]) -> None:
        """Send all ``messages`` and wait until each is acknowledged."""
        producer = self._get()
        deadline = time.monotonic() + self._timeout_s
        try:
            futures = [producer.send(topic, key=key, value=value, headers=headers) for key, value, headers in messages]
            producer.flush(timeout=max(0.0, deadline - time.monotonic()))
            for future in futures:
                future.get(timeout=max(0.001, deadline - time.monotonic()))
        except Exception as exc:
            self._discard(producer)
            raise ProduceError(
                f"Kafka did not acknowledge the events ({exc.__class__.__name__}: {exc}); retry later",
                retry_after=self._retry_after,
            ) from exc

    def close(self) -> None:
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            producer.close(timeout=self._timeout_s)
