"""Kafka producing with bounded waits, and recovery from a broken client.

:class:`KafkaSender` sends a request's messages and waits until every one is
acknowledged, or raises :class:`~chalicelib.errors.ProduceError` (a 503) once
``timeout_s`` has passed. After any failure it throws its client away and
builds a new one on the next send: kafka-python's idempotent producer, for
one, stays broken for good once the broker it talked to restarts.

Two client libraries sit behind one small interface (``send_all``/``close``):
confluent-kafka (librdkafka; the default) and kafka-python. Measured in
``make bench`` on the acknowledged-per-request pattern collect needs,
librdkafka costs several times less CPU per request, which is what decides
collect's events per core. ``TRACKFLOW_KAFKA_CLIENT=kafka-python`` switches.

:func:`visitor_messages` groups a request's events into one message per visitor
(key = anonymous id): per-visitor order holds, and Kafka handles one message
where it would otherwise handle one per event.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import orjson

from chalicelib.errors import ProduceError
from chalicelib.kafka.diagnosis import ClientErrors, replica_shortfall
from chalicelib.kafka.security import KafkaSecurity
from chalicelib.metrics import produce_timer

logger = logging.getLogger(__name__)

Headers = list[tuple[str, str | bytes | None]]
Message = tuple[bytes | None, bytes, Headers]


class ProducerBackend(Protocol):
    def send_all(self, topic: str, messages: Sequence[Message], timeout_s: float) -> None: ...

    def probe(self, topic: str, timeout_s: float) -> None: ...

    def close(self, timeout_s: float) -> None: ...


BackendFactory = Callable[[], ProducerBackend]


def shared_fields(events: Sequence[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Split events into the fields all of them share and what each one has of its own.

    A request's events share their visitor, page, client and campaign: sent
    once per message they make it several times smaller, and cheaper to read.
    Enriched events all have the same keys in the same order, so the values
    are compared column by column (C loops); other shapes take a slower path.
    """
    first = events[0]
    keys = tuple(first)
    if len(events) == 1:
        return dict(first), [{}]
    if any(tuple(event) != keys for event in events):
        shared = {k: v for k, v in first.items() if all(k in e and e[k] == v for e in events)}
        return shared, [{k: v for k, v in e.items() if k not in shared} for e in events]
    count = len(events)
    columns = list(zip(*(event.values() for event in events), strict=True))
    # Enriched values are str or int: equal means the same.
    alike = [column.count(column[0]) == count for column in columns]
    shared = {key: column[0] for key, column, same in zip(keys, columns, alike, strict=True) if same}
    own_keys = [key for key, same in zip(keys, alike, strict=True) if not same]
    own_columns = [column for column, same in zip(columns, alike, strict=True) if not same]
    return shared, [dict(zip(own_keys, values, strict=True)) for values in zip(*own_columns, strict=True)] or [
        {} for _ in events
    ]


def visitor_messages(events: Sequence[dict[str, Any]], *, project_id: str, schema_version: int) -> list[Message]:
    """One Kafka message per anonymous id: ``{"v": 2, "shared": {...}, "events": [{...}, ...]}``.

    Each event is ``shared`` updated with its own entry.
    """
    by_visitor: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_visitor.setdefault(str(event.get("anonymous_id") or event["event_id"]), []).append(event)
    headers: Headers = [("project", project_id.encode()), ("schema", str(schema_version).encode())]
    messages: list[Message] = []
    for visitor, group in by_visitor.items():
        shared, own = shared_fields(group)
        messages.append(
            (visitor.encode(), orjson.dumps({"v": schema_version, "shared": shared, "events": own}), headers)
        )
    return messages


class ConfluentBackend:
    """librdkafka through confluent-kafka: delivery reports collected per call.

    librdkafka keeps connection-level failures (authentication refused, a TLS
    listener spoken to in plain text) to its error callback and only times the
    messages out: the last such error is logged once and named in the
    exception, so the 503 and the log say why.
    """

    def __init__(self, bootstrap_servers: str, *, timeout_s: float, client_id: str, security: KafkaSecurity) -> None:
        from confluent_kafka import Producer

        self._errors = ClientErrors(security)
        self._admin_conf = {"bootstrap.servers": bootstrap_servers, **security.confluent()}
        self._min_insync_of: dict[str, int | None] = {}
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap_servers,
                "client.id": client_id,
                "acks": "all",
                "linger.ms": 1,
                "message.timeout.ms": max(1000, int(timeout_s * 1000)),
                "reconnect.backoff.max.ms": 1000,
                **self._errors.config(),
                **security.confluent(),
            }
        )

    def send_all(self, topic: str, messages: Sequence[Message], timeout_s: float) -> None:
        errors: list[Any] = []

        def on_delivery(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(err)

        for key, value, headers in messages:
            self._producer.produce(topic, value=value, key=key, headers=headers, on_delivery=on_delivery)
        remaining = self._producer.flush(timeout_s)
        if remaining:
            # Don't let them go out after we answered 503: the client resends anyway.
            self._producer.purge()
            reason = self._replica_shortfall(topic) or self._errors.reason()
            why = f": {reason}" if reason else ""
            raise TimeoutError(f"{remaining} messages not acknowledged within {timeout_s:g} s{why}")
        if errors:
            reason = self._errors.reason()
            raise RuntimeError(f"{errors[0]}: {reason}" if reason else str(errors[0]))

    def probe(self, topic: str, timeout_s: float) -> None:
        """Ask the cluster for ``topic``'s metadata on this producer's connections; raise saying why writes fail."""
        try:
            metadata = self._producer.list_topics(topic=topic, timeout=timeout_s)
        except Exception as exc:  # KafkaException, or a timeout: the client's own reports say why
            with contextlib.suppress(Exception):
                self._producer.poll(0)  # deliver the reports the client queued
            raise RuntimeError(self._errors.reason() or str(exc)) from exc
        found = metadata.topics.get(topic)
        if found is None or found.error is not None:
            raise RuntimeError(f"topic {topic}: {found.error if found is not None else 'not listed'}")
        shortfall = replica_shortfall(found, self._min_insync(topic, timeout_s))
        if shortfall:
            raise RuntimeError(shortfall)

    def _min_insync(self, topic: str, timeout_s: float) -> int | None:
        """The topic's min.insync.replicas, asked once; None when the cluster does not say."""
        if topic not in self._min_insync_of:
            from confluent_kafka.admin import AdminClient, ConfigResource

            try:
                admin = AdminClient(self._admin_conf)
                resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
                configs = admin.describe_configs([resource])[resource].result(timeout=timeout_s)
                self._min_insync_of[topic] = int(configs["min.insync.replicas"].value)
            except Exception:  # no right to describe configs, or a broker without them: asked once
                self._min_insync_of[topic] = None
        return self._min_insync_of[topic]

    def _replica_shortfall(self, topic: str) -> str | None:
        """After a timeout: whether the topic's replicas explain it (bounded: one metadata request)."""
        try:
            found = self._producer.list_topics(topic=topic, timeout=1.0).topics.get(topic)
        except Exception:  # the cluster does not answer at all: the client's own reports say why
            return None
        if found is None or found.error is not None:
            return None
        return replica_shortfall(found, self._min_insync(topic, 1.0))

    def close(self, timeout_s: float) -> None:
        self._producer.flush(timeout_s)


class KafkaPythonBackend:
    """kafka-python: futures per message."""

    def __init__(self, bootstrap_servers: str, *, timeout_s: float, client_id: str, security: KafkaSecurity) -> None:
        from kafka import KafkaProducer

        timeout_ms = int(timeout_s * 1000)
        self._producer = KafkaProducer(
            bootstrap_servers=bootstrap_servers.split(","),
            client_id=client_id,
            acks="all",
            linger_ms=1,
            max_block_ms=timeout_ms,
            request_timeout_ms=timeout_ms,
            bootstrap_timeout_ms=timeout_ms,
            reconnect_backoff_max_ms=1000,
            **security.kafka_python(),
        )

    def send_all(self, topic: str, messages: Sequence[Message], timeout_s: float) -> None:
        futures = [
            self._producer.send(topic, key=key, value=value, headers=headers) for key, value, headers in messages
        ]
        self._producer.flush(timeout=timeout_s)
        for future in futures:
            future.get(timeout=0.001)

    def probe(self, topic: str, timeout_s: float) -> None:
        if not self._producer.partitions_for(topic):
            raise RuntimeError(f"topic {topic} has no partitions")

    def close(self, timeout_s: float) -> None:
        self._producer.close(timeout=timeout_s)


def backend_factory(
    client: str,
    bootstrap_servers: str,
    *,
    timeout_s: float,
    client_id: str,
    security: KafkaSecurity | None = None,
) -> BackendFactory:
    """A factory of producers of the chosen client library, with the cluster's security settings."""
    backends: dict[str, type[ConfluentBackend] | type[KafkaPythonBackend]] = {
        "confluent": ConfluentBackend,
        "kafka-python": KafkaPythonBackend,
    }
    backend = backends[client]
    secured = security or KafkaSecurity()
    return lambda: backend(bootstrap_servers, timeout_s=timeout_s, client_id=client_id, security=secured)


class KafkaSender:
    """Sends messages to a topic and waits for every acknowledgement, or raises ProduceError."""

    def __init__(self, factory: BackendFactory, *, timeout_s: float, retry_after: int = 5) -> None:
        self._factory = factory
        self._timeout_s = timeout_s
        self._retry_after = retry_after
        self._backend: ProducerBackend | None = None
        self._lock = threading.Lock()

    def _get(self) -> ProducerBackend:
        with self._lock:
            if self._backend is None:
                try:
                    self._backend = self._factory()
                except Exception as exc:  # client libraries raise several unrelated types here
                    raise ProduceError(
                        f"Kafka is unreachable ({exc.__class__.__name__}: {exc}); retry later",
                        retry_after=self._retry_after,
                    ) from exc
            return self._backend

    def _discard(self, backend: ProducerBackend) -> None:
        with self._lock:
            if self._backend is backend:
                self._backend = None
        try:
            backend.close(0)
        except Exception:  # closing a broken client may fail again; it is gone either way
            logger.debug("closing a failed producer raised", exc_info=True)

    def send(self, topic: str, messages: Sequence[Message]) -> None:
        """Send all ``messages`` and wait until each is acknowledged."""
        backend = self._get()
        try:
            with produce_timer():
                backend.send_all(topic, messages, self._timeout_s)
        except Exception as exc:
            self._discard(backend)
            raise ProduceError(
                f"Kafka did not acknowledge the events ({exc.__class__.__name__}: {exc}); retry later",
                retry_after=self._retry_after,
            ) from exc

    def probe(self, topic: str, timeout_s: float) -> None:
        """Raise unless the cluster answers for ``topic`` through the producer collect uses (built if need be).

        ``/health`` calls this instead of opening connections of its own: on a
        secured cluster each new client costs a TLS and SASL handshake.
        """
        backend = self._get()
        try:
            backend.probe(topic, timeout_s)
        except Exception:
            self._discard(backend)
            raise

    def close(self) -> None:
        with self._lock:
            backend, self._backend = self._backend, None
        if backend is not None:
            backend.close(self._timeout_s)
