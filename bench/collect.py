"""Collect throughput: the Lambda handler path against bare producer loops, same messages, same broker.

"Our path" is what API Gateway invokes: ``app.app(event, context)`` with a
proxy event per request (routing, parsing, validation, enrichment, produce,
wait for the acknowledgement, response). The baselines send the messages our
path produced, with nothing else around them, in the same acknowledged
per-request pattern (collect must not answer before Kafka acknowledged), plus
fire-and-forget variants for scale.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from bench.common import CpuTimer, tracker_bodies
from chalicelib import runtime
from chalicelib.collect.enrich import SCHEMA_VERSION, enrich
from chalicelib.collect.events import parse_body
from chalicelib.collect.service import RequestMeta, _client_fields
from chalicelib.kafka.producer import Message, visitor_messages
from chalicelib.projects import dev_project
from chalicelib.settings import Settings

logger = logging.getLogger(__name__)

BENCH_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0 Safari/537.36"


def _proxy_events(bodies: list[bytes]) -> list[dict[str, Any]]:
    from chalice.local import LambdaEventConverter, RouteMatcher

    import app

    converter = LambdaEventConverter(RouteMatcher(list(app.app.routes)))
    headers = {"content-type": "text/plain", "user-agent": BENCH_UA}
    return [converter.create_lambda_event("POST", "/v1/collect", headers, body) for body in bodies]


def _messages(body: bytes) -> list[Message]:
    """The Kafka messages collect makes of ``body`` (the development project, a desktop Chrome)."""
    batch = parse_body(body)
    client = _client_fields(dev_project(), RequestMeta(headers={"user-agent": BENCH_UA}), b"bench-salt")
    events = [
        enrich(
            e,
            project_id=batch.api_key,
            sent_at_ms=batch.sent_at_ms,
            received_at_ms=batch.sent_at_ms or 0,
            client=client,
        )
        for e in batch.events
    ]
    return visitor_messages(events, project_id=batch.api_key, schema_version=SCHEMA_VERSION)


def _kafka_python(bootstrap: str) -> Any:
    from kafka import KafkaProducer

    # The same settings as chalicelib.kafka.producer.KafkaPythonBackend.
    return KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=1)


def _bare_kafka_python(bootstrap: str, topic: str, per_request: list[list[Message]], *, sync: bool) -> float:
    producer = _kafka_python(bootstrap)
    producer.send(topic, b"warm").get(10)
    with CpuTimer() as timer:
        for messages in per_request:
            futures = [producer.send(topic, key=k, value=v, headers=h) for k, v, h in messages]
            if sync:
                producer.flush()
                for future in futures:
                    future.get(10)
        producer.flush()
    producer.close()
    return timer.sample.cpu_s


def _bare_confluent(bootstrap: str, topic: str, per_request: list[list[Message]], *, sync: bool) -> float:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 1})
    producer.produce(topic, b"warm")
    producer.flush(10)
    with CpuTimer() as timer:
        for messages in per_request:
            for k, v, h in messages:
                producer.produce(topic, value=v, key=k, headers=h)
            if sync:
                producer.flush(10)
            else:
                producer.poll(0)
        producer.flush(30)
    return timer.sample.cpu_s


def run(settings: Settings, *, requests: int, events_per_request: int) -> dict[str, float]:
    """Events per CPU second for our collect path and each baseline."""
    import app

    bodies = tracker_bodies(requests, events_per_request=events_per_request)
    events = requests * events_per_request
    proxy = _proxy_events(bodies)
    runtime.reset()
    runtime.configure(settings=settings)
    for warm in _proxy_events(tracker_bodies(200, events_per_request=events_per_request)):
        assert app.app(warm, None)["statusCode"] == 202
    latencies = []
    with CpuTimer() as ours:
        for event in proxy:
            started = time.perf_counter()
            response = app.app(event, None)
            latencies.append(time.perf_counter() - started)
            if response["statusCode"] != 202:
                raise RuntimeError(f"collect answered {response['statusCode']}: {response['body']}")
    latencies.sort()
    runtime.sender().close()
    runtime.reset()

    per_request = [_messages(body) for body in bodies]
    per_event = [[m] for body in bodies for m in _per_event_messages(body)]
    bootstrap, topic = settings.bootstrap_servers, settings.events_topic
    result = {
        "collect_events_per_s_per_core": ours.sample.per_core(events),
        "collect_wall_events_per_s": events / ours.sample.wall_s,
        # Each request waits for the broker's acknowledgement before it answers 202.
        "collect_request_p50_ms": latencies[len(latencies) // 2] * 1000,
        "collect_request_p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        "bare_kafka_python_sync_events_per_s_per_core": events
        / _bare_kafka_python(bootstrap, topic, per_request, sync=True),
        "bare_kafka_python_async_events_per_s_per_core": events
        / _bare_kafka_python(bootstrap, topic, per_request, sync=False),
        "bare_kafka_python_one_msg_per_event_async_events_per_s_per_core": events
        / _bare_kafka_python(bootstrap, topic, per_event, sync=False),
        "bare_confluent_sync_events_per_s_per_core": events / _bare_confluent(bootstrap, topic, per_request, sync=True),
        "bare_confluent_async_events_per_s_per_core": events
        / _bare_confluent(bootstrap, topic, per_request, sync=False),
    }
    # The bare job: the client collect uses (confluent-kafka), one acknowledged produce per request.
    result["collect_vs_bare_producer"] = (
        result["collect_events_per_s_per_core"] / result["bare_confluent_sync_events_per_s_per_core"]
    )
    return result


def _per_event_messages(body: bytes) -> list[Message]:
    """The same events as one message each (the shape we did not choose), for comparison."""
    out: list[Message] = []
    for key, value, headers in _messages(body):
        import orjson

        for event in orjson.loads(value)["events"]:
            out.append((key, orjson.dumps({"v": SCHEMA_VERSION, "events": [event]}), headers))
    return out
