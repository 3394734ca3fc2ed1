"""`make faults`: load through the real pipeline while things break; a table proves nothing accepted is lost.

Every scenario gets its own embedded broker and data directory. Collect runs
in this process (``chalice.test.Client``: the real handler, the real Kafka
producer); the trigger runner runs in a child process (``python -m bench.faults
runner``) that holds chDB and can be killed; a last child (``report``)
compacts the rollups and counts what is stored and what the stats API says.

Per scenario: ``sent`` events, ``acknowledged`` (answered 202, or acknowledged
by Kafka for records produced directly), ``stored`` (distinct in ``events
FINAL``), ``counted`` (overview page views plus custom events, from the stats
API), ``dead_lettered``, ``duplicates_counted`` (counted minus stored page
views and custom events), ``lost`` (acknowledged minus stored minus dead
lettered) and ``recovery_s`` (from the last fault to everything stored).
Targets: ``lost`` = 0 and ``duplicates_counted`` = 0; the soak's resident
memory flat within 10%.

    python -m bench.faults                 # every scenario, 10-minute soak
    python -m bench.faults --quick         # shorter loads and a 1-minute soak
    python -m bench.faults --only poison   # one scenario
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench.common import machine

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "faults.json"
DOC = ROOT / "docs" / "reliability.md"
EVENTS_TOPIC, DLQ_TOPIC, FAILED_TOPIC = "trackflow.events", "trackflow.events.dlq", "trackflow.events.failed"
KAFKA_LIB = ROOT / ".trackflow" / "kafka" / "lib"  # Apache Kafka's jars, resolved once for every scene
DRAIN_TIMEOUT_S = 180.0


# -- the child processes ---------------------------------------------------------------------------------------------
def _child_settings(data_dir: str, bootstrap: str) -> Any:
    from chalicelib.settings import load_settings

    return load_settings(
        {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "TRACKFLOW_DATA_DIR": data_dir, "TRACKFLOW_STAGE": "test"}
    )


def runner_main(data_dir: str, bootstrap: str, *, insert_faults: float, status_file: str) -> None:
    """Consume and ingest until SIGTERM. SIGUSR1 detaches the events table for 30 s (ClickHouse unavailable)."""
    import app
    from chalicelib import runtime
    from chalicelib.errors import StorageError
    from chalicelib.storage.clickhouse import connect
    from chalicelib.storage.migrations import migrate
    from trackflow.dev import MIGRATIONS_DIR
    from trackflow.mapping import MappingPolicy, destination_for
    from trackflow.runner import TriggerRunner

    settings = _child_settings(data_dir, bootstrap)
    migrate(connect(settings.clickhouse), MIGRATIONS_DIR, database=settings.clickhouse.database)
    runtime.configure(settings=settings)
    writer = runtime.writer()
    rng = random.Random()

    class TimesOut:
        """Writes half of a batch, then fails like a Lambda killed by its timeout mid-insert."""

        def insert_events(self, rows: Any) -> int:
            if insert_faults and rng.random() < insert_faults:
                writer.insert_events(rows[: len(rows) // 2])
                raise StorageError("Task timed out (a fault injected by bench.faults)")
            return int(writer.insert_events(rows))

        def insert_dead_letters(self, rows: Any) -> None:
            writer.insert_dead_letters(rows)

    runtime.configure(writer=TimesOut())
    admin = connect(settings.clickhouse, database=settings.clickhouse.database, private=True)

    def outage(*_: Any) -> None:
        def detach_for_a_while() -> None:
            admin.command("DETACH TABLE events")
            time.sleep(30)
            admin.command("ATTACH TABLE events")

        threading.Thread(target=detach_for_a_while, daemon=True).start()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGUSR1, outage)
    policy = MappingPolicy.from_env()  # the parent sets the deployed mapping's failure handling, or none
    runner = TriggerRunner(
        app.ingest,
        bootstrap_servers=bootstrap,
        topic=EVENTS_TOPIC,
        batching_window_s=0.1,
        session_timeout_ms=6000,
        policy=policy,
        destination=destination_for(policy, bootstrap_servers=bootstrap, security=None, mapping_id="faults"),
    )
    thread = runner.start_thread()
    while not stop.wait(0.5):
        stats = runner.stats
        Path(status_file).write_text(
            json.dumps(
                {
                    "records": stats.records,
                    "failed_batches": stats.failures,
                    "to_destination": stats.sent_to_destination,
                }
            )
        )
    runner.stop()
    thread.join(15)


def replay_main(data_dir: str, bootstrap: str) -> None:
    """Replay the failure topic into the scene's engine (``trackflow replay``'s code), print what it did as JSON."""
    from chalicelib import runtime
    from chalicelib.ingest import ingest
    from trackflow.replay import replay_topic

    settings = _child_settings(data_dir, bootstrap)
    runtime.configure(settings=settings)
    writer = runtime.writer()
    stats = replay_topic(
        bootstrap,
        FAILED_TOPIC,
        ingest=lambda payload: ingest(
            payload, writer=writer, dlq=runtime.sender(), dlq_topic=DLQ_TOPIC, now_ms=runtime.now_ms
        ),
    )
    runtime.sender().close()
    print(json.dumps({"messages": stats.messages, "records": stats.records, "inserted": stats.inserted}))


def report_main(data_dir: str, bootstrap: str) -> None:
    """Compact, then print what is stored, dead-lettered and counted by the stats API, as JSON."""
    from datetime import UTC, datetime, timedelta

    from chalicelib.rollups.compaction import compact_all
    from chalicelib.stats import reports as stats
    from chalicelib.stats.params import parse_query
    from chalicelib.storage.clickhouse import connect

    settings = _child_settings(data_dir, bootstrap)
    client = connect(settings.clickhouse, database=settings.clickhouse.database)
    compact_all(client, settle_s=0)
    by_type = dict(client.query("SELECT type, count() FROM events FINAL GROUP BY type").result_rows)
    dead = client.query("SELECT count() FROM dead_letters FINAL").result_rows[0][0]
    today = datetime.now(UTC).date()
    query = parse_query(
        {"from": str(today - timedelta(days=2)), "to": str(today), "bots": "include"},
        now=datetime.now(UTC),
        default_project="development",
    )
    pageviews = stats.overview(client, query)["metrics"]["pageviews"]["value"]
    custom = sum(row["count"] for row in stats.custom_events(client, query, name=None, prop=None)["rows"])
    stored_counted = by_type.get("pageView", 0) + sum(
        n for t, n in by_type.items() if t not in ("pageView", "click", "error")
    )
    print(
        json.dumps(
            {
                "stored": sum(by_type.values()),
                "counted": pageviews + custom,
                "stored_counted": stored_counted,
                "dead_lettered": dead,
            }
        )
    )


# -- the parent: load, faults, accounting ----------------------------------------------------------------------------
@dataclass
class Tally:
    sent: int = 0
    acknowledged: int = 0
    answers: list[tuple[float, int, str]] = field(default_factory=list)  # (when, status, error message)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, sent: int, acknowledged: int) -> None:
        with self.lock:
            self.sent += sent
            self.acknowledged += acknowledged

    def answered(self, status: int, message: str) -> None:
        with self.lock:
            self.answers.append((time.monotonic(), status, message))

    def longest_refusal_s(self) -> float:
        return longest_refusal_s(self.answers)


def longest_refusal_s(answers: list[tuple[float, int, str]]) -> float:
    """The longest stretch of (time, status, message) answers during which collect answered nothing but 5xx."""
    longest, began = 0.0, None
    for at, status, _ in answers:
        if status >= 500:
            began = at if began is None else began
            longest = max(longest, at - began)
        else:
            began = None
    return round(longest, 1)


class Scene:
    """One scenario's broker, data directory, collect client and runner child."""

    def __init__(
        self, tmp: Path, *, insert_faults: float = 0.0, kafka: str = "embedded", mapping: dict[str, str] | None = None
    ) -> None:
        from chalice.test import Client

        import app
        from chalicelib import runtime
        from chalicelib.settings import load_settings
        from trackflow.broker import EmbeddedBroker, free_port
        from trackflow.kafka import ApacheKafka
        from trackflow.kafka_cluster import KafkaCluster
        from trackflow.topics import ensure_topics

        self.tmp = tmp
        self.broker: Any
        if kafka == "cluster":  # three brokers and a controller, MSK's defaults
            (tmp / "cluster").mkdir()
            (tmp / "cluster" / "lib").symlink_to(self._jars())
            self.broker = KafkaCluster(tmp / "cluster", brokers=3, port=_free_run(6)).start()
        elif kafka == "apache":
            self.broker = ApacheKafka(
                tmp / "kafka", port=free_port(), controller_port=free_port(), lib=self._jars()
            ).start()
        else:
            self.broker = EmbeddedBroker(port=free_port(), log_path=tmp / "broker.log").start()
        self.bootstrap = self.broker.bootstrap_servers
        # No policy: retried until it succeeds; with one, the deployed mapping's failure handling.
        self.mapping = mapping or {"TRACKFLOW_ON_FAILURE_DESTINATION": ""}
        self.topics = {EVENTS_TOPIC: 4, DLQ_TOPIC: 1, FAILED_TOPIC: 1}
        ensure_topics(self.bootstrap, self.topics, verify=True)
        runtime.reset()
        runtime.configure(
            settings=load_settings(
                {
                    "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
                    "TRACKFLOW_DATA_DIR": str(tmp / "collect"),
                    "TRACKFLOW_STAGE": "test",
                    "TRACKFLOW_PRODUCE_TIMEOUT": "3",
                }
            )
        )
        self.client = Client(app.app)
        self.insert_faults = insert_faults
        self.runner: subprocess.Popen[bytes] | None = None
        self.tally = Tally()
        self.start_runner()

    def _child(self, *args: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "bench.faults",
            *args,
            "--data-dir",
            str(self.tmp / "engine"),
            "--bootstrap",
            self.bootstrap,
        ]

    @staticmethod
    def _jars() -> Path:
        from trackflow.kafka import ApacheKafka

        KAFKA_LIB.parent.mkdir(parents=True, exist_ok=True)
        return ApacheKafka(KAFKA_LIB.parent).jars()

    def start_runner(self) -> None:
        import os

        args = self._child(
            "runner", "--insert-faults", str(self.insert_faults), "--status", str(self.tmp / "runner.json")
        )
        self.runner = subprocess.Popen(
            args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ | self.mapping
        )

    def kill_runner(self) -> None:
        assert self.runner is not None
        self.runner.send_signal(signal.SIGKILL)
        self.runner.wait(10)

    def send(self, events: int, *, per_request: int = 10) -> None:
        """Requests of one visitor's events each; a 503 is retried with the same event ids, as the tracker does."""
        now = int(time.time() * 1000)
        visitor = f"v-{uuid.uuid4().hex[:8]}"
        batch = [
            {
                "event_id": str(uuid.uuid4()),
                "type": "pageView" if n % 5 else "signup",
                "ts": now - n,
                "props": {"n": n},
                "context": {"url": f"https://shop.example/p{n % 7}", "anonymous_id": visitor, "session_id": visitor},
            }
            for n in range(per_request)
        ][:events]
        body = orjson.dumps({"api_key": "YOUR_API_KEY", "sent_at": now, "events": batch})
        self.tally.add(len(batch), 0)
        for _ in range(120):
            response = self.client.http.post(
                "/v1/collect", headers={"Content-Type": "text/plain", "User-Agent": "bench-faults"}, body=body
            )
            error = (response.json_body or {}).get("error", {}) if response.status_code >= 400 else {}
            self.tally.answered(response.status_code, error.get("message", ""))
            if response.status_code == 202:
                self.tally.add(0, response.json_body["accepted"])
                return
            time.sleep(0.5)

    def load(self, events_per_s: float, seconds: float, *, per_request: int = 10) -> threading.Thread:
        """Send in the background at a steady rate; join the thread to wait for the end."""

        def run() -> None:
            requests = int(events_per_s * seconds / per_request)
            start = time.monotonic()
            for i in range(requests):
                pause = start + i * per_request / events_per_s - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                self.send(per_request, per_request=per_request)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    def finish(self, fault_ended: float) -> dict[str, Any]:
        """Wait until the runner has committed every record on the broker, stop it, and count."""
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while not self._all_committed() and time.monotonic() < deadline:
            time.sleep(1.0)
        recovery = time.monotonic() - fault_ended
        try:
            status = json.loads((self.tmp / "runner.json").read_text())
        except (OSError, ValueError):
            status = {}
        assert self.runner is not None
        self.runner.send_signal(signal.SIGTERM)
        self.runner.wait(60)
        replayed = {}
        if status.get("to_destination"):  # what the mapping gave up on comes back with `trackflow replay`
            out = subprocess.run(self._child("replay"), cwd=ROOT, capture_output=True, text=True, check=True).stdout
            replayed = json.loads(out.strip().splitlines()[-1])
        out = subprocess.run(self._child("report"), cwd=ROOT, capture_output=True, text=True, check=True).stdout
        counts = json.loads(out.strip().splitlines()[-1])
        extra = {"to_failure_topic": status["to_destination"], "replayed": replayed["records"]} if replayed else {}
        return extra | {
            "sent": self.tally.sent,
            "acknowledged": self.tally.acknowledged,
            "stored": counts["stored"],
            "counted": counts["counted"],
            "dead_lettered": counts["dead_lettered"],
            "duplicates_counted": counts["counted"] - counts["stored_counted"],
            "lost": self.tally.acknowledged - counts["stored"] - counts["dead_lettered"],
            "recovery_s": round(recovery, 1),
            "refused_s": self.tally.longest_refusal_s(),  # the longest stretch collect answered only 5xx
            "failed_batches": status.get("failed_batches"),  # handler failures the (last) runner retried
        }

    def _all_committed(self) -> bool:
        """Whether the ingest group committed, on every partition, the offset after its last record.

        Records are counted by reading the topic (the embedded broker's own end
        offsets are unreliable); commits are asked of the group coordinator.
        """
        from kafka import KafkaConsumer, TopicPartition

        from trackflow.runner import DEFAULT_GROUP_ID

        servers = self.bootstrap.split(",")
        reader = KafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False)
        group = KafkaConsumer(bootstrap_servers=servers, group_id=DEFAULT_GROUP_ID, enable_auto_commit=False)
        try:
            parts = [TopicPartition(EVENTS_TOPIC, p) for p in range(self.topics[EVENTS_TOPIC])]
            reader.assign(parts)
            for tp in parts:
                reader.seek(tp, 0)
            ends: dict[Any, int] = {}
            idle = 0
            while idle < 2:
                polled = reader.poll(timeout_ms=300, max_records=10_000)
                idle = idle + 1 if not polled else 0
                for tp, records in polled.items():
                    ends[tp] = records[-1].offset + 1
            return all((group.committed(tp, timeout_ms=5000) or 0) >= end for tp, end in ends.items())
        except Exception:  # the broker restarting: not yet
            return False
        finally:
            reader.close()
            group.close()

    def close(self) -> None:
        from chalicelib import runtime

        if self.runner is not None and self.runner.poll() is None:
            self.runner.kill()
        try:
            runtime.sender().close()
        finally:
            runtime.reset()
            self.broker.stop()


@contextmanager
def scene(**kwargs: Any) -> Iterator[Scene]:
    with tempfile.TemporaryDirectory(prefix="trackflow-faults-") as tmp:
        current = Scene(Path(tmp), **kwargs)
        try:
            yield current
        finally:
            current.close()


def runner_sigkilled(quick: bool) -> dict[str, Any]:
    kills = 5 if quick else 20
    with scene() as s:
        load = s.load(events_per_s=500, seconds=kills * 1.5 + 5)
        rng = random.Random(7)
        for _ in range(kills):
            time.sleep(rng.uniform(0.5, 2.0))
            s.kill_runner()
            s.start_runner()
        load.join()
        return s.finish(time.monotonic()) | {"faults": kills}


def _clickhouse_outage(s: Scene, *, events_per_s: float) -> dict[str, Any]:
    """Load for 45 s; from the 8th second the events table is gone for 30 s (chDB's stopped server)."""
    load = s.load(events_per_s=events_per_s, seconds=45)
    time.sleep(8)
    assert s.runner is not None
    s.runner.send_signal(signal.SIGUSR1)
    ended = time.monotonic() + 30
    load.join()
    return s.finish(ended) | {"faults": 1}


def clickhouse_unavailable(quick: bool) -> dict[str, Any]:
    with scene() as s:
        return _clickhouse_outage(s, events_per_s=500)


def handler_killed_mid_insert(quick: bool) -> dict[str, Any]:
    with scene(insert_faults=0.2) as s:
        load = s.load(events_per_s=500, seconds=10 if quick else 30)
        load.join()
        return s.finish(time.monotonic()) | {"faults": "20% of inserts"}


def poison(quick: bool) -> dict[str, Any]:
    from chalicelib import runtime

    bad_values = [
        b"not json",
        orjson.dumps([1, 2]),
        orjson.dumps({"v": 99, "events": []}),
        orjson.dumps({"v": 1, "events": [{"event_id": "nope"}]}),
    ]
    with scene() as s:
        load = s.load(events_per_s=500, seconds=10 if quick else 30)
        poisoned = 0
        for n in range(40 if quick else 200):
            if n % 5 == 4:
                runtime.sender().send(EVENTS_TOPIC, [(b"p", random.choice(bad_values), [])])
            else:  # a good message carrying one event ClickHouse or ingest must refuse
                event = _normalised_event() | random.choice(
                    [{"is_bot": 300}, {"timestamp": 0}, {"event_id": "x"}, {"visitor_hash": -1}]
                )
                runtime.sender().send(EVENTS_TOPIC, [(b"p", orjson.dumps({"v": 1, "events": [event]}), [])])
            poisoned += 1
            time.sleep(0.05)
        s.tally.add(poisoned, poisoned)
        load.join()
        return s.finish(time.monotonic()) | {"faults": poisoned}


def _normalised_event() -> dict[str, Any]:
    from chalicelib.storage.clickhouse import CLIENT_DEFAULTS, EVENT_FIELDS

    now = int(time.time() * 1000)
    event: dict[str, Any] = {name: "" for name in EVENT_FIELDS} | dict(CLIENT_DEFAULTS)
    return event | {
        "project_id": "development",
        "event_id": str(uuid.uuid4()),
        "type": "pageView",
        "timestamp": now,
        "client_ts": now,
        "received_at": now,
        "props": "{}",
    }


def broker_restarted(quick: bool) -> dict[str, Any]:
    with scene() as s:
        load = s.load(events_per_s=300, seconds=20)
        time.sleep(6)
        s.broker.stop(kill=True)  # memory only: what it held is gone
        time.sleep(3)
        s.broker.start()
        from trackflow.topics import ensure_topics

        ensure_topics(s.bootstrap, s.topics)
        ended = time.monotonic()
        load.join()
        return s.finish(ended) | {"faults": 1}


def _free_run(count: int) -> int:
    """A port from which ``count`` ports in a row are free (the cluster's brokers and controller)."""
    import socket

    from trackflow.broker import free_port

    while True:
        base = free_port()
        try:
            for port in range(base, base + count):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue


def cluster_one_broker_killed(quick: bool) -> dict[str, Any]:
    """One broker of three SIGKILLed under load, restarted 10 s later: leaders move, nothing is lost."""
    with scene(kafka="cluster") as s:
        load = s.load(events_per_s=300, seconds=30)
        time.sleep(8)
        s.broker.kill(1)
        time.sleep(10)
        s.broker.restart(1)
        ended = time.monotonic()
        load.join()
        return s.finish(ended) | {"faults": 1}


def cluster_two_brokers_killed(quick: bool) -> dict[str, Any]:
    """Two brokers of three down: collect refuses with NOT_ENOUGH_REPLICAS until one comes back."""
    with scene(kafka="cluster") as s:
        load = s.load(events_per_s=200, seconds=40)
        time.sleep(8)
        s.broker.kill(1)
        s.broker.kill(2)
        time.sleep(15)
        s.broker.restart(2)
        ended = time.monotonic()
        load.join()
        named = [
            message for _, status, message in s.tally.answers if status == 503 and "NOT_ENOUGH_REPLICAS" in message
        ]
        s.broker.restart(1)
        return s.finish(ended) | {"faults": 2, "refusals_naming_not_enough_replicas": len(named)}


def cluster_clickhouse_outage_past_retries(quick: bool) -> dict[str, Any]:
    """ClickHouse gone 30 s, longer than 2 retries: batches go to the failure topic, replay brings them back."""
    mapping = {
        "TRACKFLOW_ON_FAILURE_DESTINATION": f"kafka://{FAILED_TOPIC}",
        "TRACKFLOW_MAXIMUM_RETRY_ATTEMPTS": "2",
        "TRACKFLOW_RETRY_BACKOFF": "1",
        "TRACKFLOW_RETRY_BACKOFF_MAX": "2",
    }
    with scene(kafka="cluster", mapping=mapping) as s:
        return _clickhouse_outage(s, events_per_s=300)


def apache_broker_killed(quick: bool) -> dict[str, Any]:
    """The single Apache Kafka broker SIGKILLed and restarted: it keeps what it acknowledged."""
    with scene(kafka="apache") as s:
        load = s.load(events_per_s=300, seconds=20)
        time.sleep(6)
        s.broker.stop(kill=True)
        time.sleep(3)
        s.broker.start()
        ended = time.monotonic()
        load.join()
        return s.finish(ended) | {"faults": 1}


def soak(quick: bool) -> dict[str, Any]:
    from bench.common import rss_mb

    seconds = 60 if quick else 600
    with scene() as s:
        load = s.load(events_per_s=2000, seconds=seconds, per_request=20)
        time.sleep(min(30, seconds / 4))  # warmed up: engine caches, first merges
        assert s.runner is not None
        start_rss = rss_mb(s.runner.pid) or 0.0
        samples = [start_rss]
        while load.is_alive():
            time.sleep(5)
            samples.append(rss_mb(s.runner.pid) or 0.0)
        end_rss = samples[-1]
        result = s.finish(time.monotonic())
        return result | {
            "faults": f"{seconds} s at 2,000 events/s",
            "rss_mb_start": round(start_rss),
            "rss_mb_end": round(end_rss),
            "rss_mb_max": round(max(samples)),
        }


SCENARIOS: dict[str, Callable[[bool], dict[str, Any]]] = {
    "runner_sigkilled": runner_sigkilled,
    "clickhouse_unavailable_30s": clickhouse_unavailable,
    "handler_killed_mid_insert": handler_killed_mid_insert,
    "poison_records": poison,
    "embedded_broker_restarted_empty": broker_restarted,  # memory only: the row says what that broker loses
    "apache_broker_sigkilled": apache_broker_killed,
    "cluster_one_of_three_brokers_sigkilled": cluster_one_broker_killed,
    "cluster_two_of_three_brokers_down": cluster_two_brokers_killed,
    "cluster_clickhouse_outage_past_retries": cluster_clickhouse_outage_past_retries,
    "soak": soak,
}


def _table(results: dict[str, dict[str, Any]], command: str, machine: dict[str, Any]) -> str:
    columns = [
        "sent",
        "acknowledged",
        "stored",
        "counted",
        "dead_lettered",
        "duplicates_counted",
        "lost",
        "recovery_s",
        "refused_s",
        "to_failure_topic",
        "replayed",
    ]
    lines = [
        f"`{command}` on {machine['cpu']} ({machine['cores']} cores), {time.strftime('%Y-%m-%d')}; each row says "
        "when and where it was measured (`--only` re-runs some rows and keeps the others).",
        "",
        "| scenario | faults | " + " | ".join(columns) + " | memory | measured |",
        "|---|---|" + "---|" * len(columns) + "---|---|",
    ]
    for name, row in results.items():
        memory = f"{row['rss_mb_start']} → {row['rss_mb_end']} MB" if "rss_mb_start" in row else ""
        cells = [str(row.get(c, "")) for c in columns]
        when = f"{row.get('when', '')} ({row['cpu']})" if row.get("cpu") else row.get("when", "")
        lines.append(f"| {name} | {row.get('faults', '')} | " + " | ".join(cells) + f" | {memory} | {when} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", nargs="?", default="run", choices=["run", "runner", "report", "replay"])
    parser.add_argument("--quick", action="store_true", help="shorter loads, fewer faults, a 1-minute soak")
    parser.add_argument("--only", choices=sorted(SCENARIOS), action="append", help="run only these scenarios")
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    parser.add_argument("--insert-faults", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--status", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    if args.mode == "runner":
        runner_main(args.data_dir, args.bootstrap, insert_faults=args.insert_faults, status_file=args.status)
        return 0
    if args.mode == "report":
        report_main(args.data_dir, args.bootstrap)
        return 0
    if args.mode == "replay":
        replay_main(args.data_dir, args.bootstrap)
        return 0
    results: dict[str, dict[str, Any]] = {}
    if args.only and OUT.exists():  # the other rows keep the figures of their last run (each says when)
        kept = json.loads(OUT.read_text()).get("results", {})
        results = {name: row for name, row in kept.items() if name in SCENARIOS}
    for name in args.only or list(SCENARIOS):
        print(f"[{time.strftime('%H:%M:%S')}] {name} ...", flush=True)
        results[name] = SCENARIOS[name](args.quick) | {"when": time.strftime("%Y-%m-%d"), "cpu": machine()["cpu"]}
        print(f"    {results[name]}", flush=True)
    results = {name: results[name] for name in SCENARIOS if name in results}
    command = "make faults" + (" (--quick)" if args.quick else "")
    facts = machine()
    report = {
        "command": command,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": facts,
        "results": results,
    }
    OUT.write_text(json.dumps(report, indent=2) + "\n")
    table = _table(results, command, facts)
    print("\n" + table)
    _write_doc(table)
    met = all(r["lost"] == 0 and r["duplicates_counted"] == 0 for r in results.values())
    print(f"\nwritten to {OUT.relative_to(ROOT)} and {DOC.relative_to(ROOT)}; targets {'met' if met else 'NOT met'}")
    return 0


def _write_doc(table: str) -> None:
    """Replace the results table between the markers in docs/reliability.md."""
    start, end = "<!-- faults:start -->", "<!-- faults:end -->"
    text = DOC.read_text() if DOC.exists() else f"# Reliability\n\n{start}\n{end}\n"
    head, _, rest = text.partition(start)
    _, _, tail = rest.partition(end)
    DOC.write_text(f"{head}{start}\n{table}\n{end}{tail}")


if __name__ == "__main__":
    raise SystemExit(main())
