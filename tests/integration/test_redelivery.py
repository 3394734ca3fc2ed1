"""Every event counted once in every report, whatever the redelivery (real broker, real engine).

The records are read back from the embedded broker and handed to the real
``ingest`` Lambda handler (``chalice.test.Client``) in AWS-shaped batches with
other boundaries each time, as the event source mapping does after a timeout
and BisectBatchOnFunctionError does by design. After each step every stats
endpoint is compared with `events FINAL`, with the counts sent, and (for the
rollup-capable ones) with the same report on raw events; before and after
the rollups are compacted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from chalice.test import Client

import app
from chalicelib import runtime
from chalicelib.errors import StorageError
from chalicelib.rollups.compaction import compact_all
from chalicelib.settings import Settings, load_settings
from tests.conftest import both_brokers, make_env, read_records, wait_for
from tests.integration.reports import check, gather, visits
from trackflow.broker import EmbeddedBroker
from trackflow.runner import TriggerRunner, mapping_payload
from trackflow.topics import ensure_topics

pytestmark = pytest.mark.integration


@pytest.fixture(params=["embedded", "apache"])
def broker(request: pytest.FixtureRequest) -> Any:
    """Every test here runs against the embedded broker and against Apache Kafka."""
    return both_brokers(request)


ROOT = Path(__file__).resolve().parents[2]


def _records(conf: Settings, count: int) -> list[Any]:
    """The first ``count`` records of the events topic's partition 0, read back from the broker."""
    return read_records(conf.bootstrap_servers, conf.events_topic, count)[:count]


@pytest.fixture
def one_partition(settings: Settings, clickhouse: Any) -> Iterator[Settings]:
    """The pipeline on topics with one partition, so offsets follow the order of the requests."""
    conf = load_settings(make_env_like(settings))
    ensure_topics(conf.bootstrap_servers, {conf.events_topic: 1, conf.dlq_topic: 1})
    runtime.reset()
    runtime.configure(settings=conf)
    yield conf
    runtime.sender().close()
    runtime.reset()


def make_env_like(conf: Settings) -> dict[str, str]:
    suffix = uuid.uuid4().hex[:8]
    return {
        "KAFKA_BOOTSTRAP_SERVERS": conf.bootstrap_servers,
        "TRACKFLOW_DATA_DIR": str(conf.data_dir),
        "CLICKHOUSE_DATABASE": conf.clickhouse.database,
        "TRACKFLOW_EVENTS_TOPIC": f"one-{suffix}",
        "TRACKFLOW_DLQ_TOPIC": f"one-dlq-{suffix}",
        "TRACKFLOW_STAGE": "test",
    }


def _deliver(client: Client, conf: Settings, records: list[Any]) -> dict[str, Any]:
    response = client.lambda_.invoke("ingest", mapping_payload(records, bootstrap_servers=conf.bootstrap_servers))
    result: dict[str, Any] = response.payload
    return result


def _check_now_and_compacted(client: Client, expected: Any) -> None:
    reader = runtime.reader()
    check(gather(client, reader), expected)  # days not compacted: raw events
    assert compact_all(runtime.rollup_client(), settle_s=0).hours >= 1
    found = gather(client, reader)
    assert found["clean_hours"] >= 1, "the rollups were not used"
    check(found, expected)


def test_overlapping_batches_01_12_012_count_each_event_once(one_partition: Settings) -> None:
    with Client(app.app) as client:
        sent = visits(client, 3)
        r = _records(one_partition, 3)
        assert _deliver(client, one_partition, [r[0], r[1]])["inserted"] == 14
        _check_now_and_compacted(client, sent[0] + sent[1])
        _deliver(client, one_partition, [r[1], r[2]])  # r[1] again, now beside r[2]
        _check_now_and_compacted(client, sum(sent, Counter()))
        _deliver(client, one_partition, r)  # all three again, in one batch
        _check_now_and_compacted(client, sum(sent, Counter()))


def test_a_batch_split_in_halves_after_a_failed_invocation_counts_once(one_partition: Settings) -> None:
    class TimesOutAfterWriting:
        """Writes the rows, then fails like a Lambda that timed out after its insert."""

        def __init__(self, inner: Any) -> None:
            self.inner, self.armed = inner, True

        def insert_events(self, rows: Any) -> int:
            written: int = self.inner.insert_events(rows)
            if self.armed:
                self.armed = False
                raise StorageError("Task timed out after 60.00 seconds")
            return written

        def insert_dead_letters(self, rows: Any) -> None:
            self.inner.insert_dead_letters(rows)

    runtime.configure(writer=TimesOutAfterWriting(runtime.writer()))
    with Client(app.app) as client:
        expected = sum(visits(client, 4), Counter())
        r = _records(one_partition, 4)
        with pytest.raises(StorageError):
            _deliver(client, one_partition, r)
        compact_all(runtime.rollup_client(), settle_s=0)  # compaction may see the half-acknowledged insert
        _deliver(client, one_partition, r[:2])  # bisected, as BisectBatchOnFunctionError does
        _deliver(client, one_partition, r[2:])
        _check_now_and_compacted(client, expected)


def test_new_records_at_reused_offsets_after_the_broker_restarted_empty_are_stored(
    own_broker: EmbeddedBroker, data_dir: Path
) -> None:
    from chalicelib.storage.clickhouse import connect
    from chalicelib.storage.migrations import migrate
    from trackflow.dev import MIGRATIONS_DIR

    conf = load_settings(make_env(own_broker, data_dir, TRACKFLOW_PRODUCE_TIMEOUT="2"))
    topics = {conf.events_topic: 1, conf.dlq_topic: 1}
    ensure_topics(conf.bootstrap_servers, topics)
    migrate(connect(conf.clickhouse), MIGRATIONS_DIR, database=conf.clickhouse.database)
    runtime.reset()
    runtime.configure(settings=conf)
    runner = TriggerRunner(
        app.ingest,
        bootstrap_servers=conf.bootstrap_servers,
        topic=conf.events_topic,
        batching_window_s=0.05,
        on_consumer_error=lambda: ensure_topics(conf.bootstrap_servers, topics),
    )
    thread = runner.start_thread()
    reader = runtime.reader()

    def stored() -> int:
        return int(reader.query("SELECT count() FROM events FINAL").result_rows[0][0])

    try:
        with Client(app.app) as client:
            expected = sum(visits(client, 2), Counter())
            first = _records(conf, 2)
            wait_for(lambda: stored() == 14, timeout=60)
            assert compact_all(runtime.rollup_client(), settle_s=0).hours >= 1
            own_broker.stop(kill=True)  # memory only: records, topics and committed offsets are gone
            own_broker.start()
            ensure_topics(conf.bootstrap_servers, topics)
            # The first visitors' requests again (a tracker that never heard the 202), then new ones:
            # all at offsets 0.. again, which the runner already committed before the restart.
            producer_records = [(r.key, r.value, r.headers) for r in first]

            def resend() -> bool:
                try:
                    runtime.sender().send(conf.events_topic, producer_records)
                except Exception:
                    return False
                return True

            wait_for(resend, timeout=30, interval=0.5)
            expected += sum(visits(client, 3), Counter())
            try:
                wait_for(lambda: stored() == 7 * 5, timeout=150)
            except AssertionError:
                raise AssertionError(f"stored {stored()} of 35 events; runner {runner.stats}") from None
    finally:
        runner.stop()
        thread.join(15)
    try:
        with Client(app.app) as client:
            _check_now_and_compacted(client, expected)
    finally:
        runtime.sender().close()
        runtime.reset()


CHILD = """
import os, sys, threading, time, json
sys.path.insert(0, {root!r})
from chalicelib import runtime
from chalicelib.settings import load_settings
from trackflow.runner import TriggerRunner
import app

from chalicelib.storage.clickhouse import connect
from chalicelib.storage.migrations import migrate
from trackflow.dev import MIGRATIONS_DIR

settings = load_settings()
migrate(connect(settings.clickhouse), MIGRATIONS_DIR, database=settings.clickhouse.database)
runtime.configure(settings=settings)
mode, batch_size, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
calls = [0]

def handler(event, context):
    result = app.ingest(event, context)
    calls[0] += 1
    if mode == "pause" and calls[0] == 2:
        # Inserted, not yet committed: the parent kills this process now.
        open(os.environ["PAUSED_MARKER"], "w").write("paused")
        time.sleep(600)
    return result

runner = TriggerRunner(handler, bootstrap_servers=settings.bootstrap_servers, topic=settings.events_topic,
                       group_id="kill-test", batch_size=batch_size, batching_window_s=0.5)
deadline = time.monotonic() + 120
while runner.stats.records < total and time.monotonic() < deadline:
    runner.run_once()
runner.stop()
from chalice.test import Client
from chalicelib.rollups.compaction import compact_all
from tests.integration.reports import gather
with Client(app.app) as client:
    before = gather(client, runtime.reader())
    compact_all(runtime.rollup_client(), settle_s=0)
    after = gather(client, runtime.reader())
print(json.dumps({{"committed": runner.stats.records, "before": before, "after": after}}))
"""


def test_records_inserted_by_a_runner_killed_before_its_commit_count_once(settings: Settings, tmp_path: Path) -> None:
    """SIGKILL between insert and commit; the next runner redelivers with other batch boundaries."""
    conf = load_settings(make_env_like(settings) | {"TRACKFLOW_DATA_DIR": str(tmp_path / "child")})
    ensure_topics(conf.bootstrap_servers, {conf.events_topic: 1, conf.dlq_topic: 1})
    runtime.reset()
    runtime.configure(settings=conf)  # collect only: the children hold their own chDB directory
    try:
        with Client(app.app) as client:
            expected = sum(visits(client, 5), Counter())
    finally:
        runtime.sender().close()
        runtime.reset()
    env = (
        os.environ
        | make_env_like(conf)
        | {
            "TRACKFLOW_DATA_DIR": str(tmp_path / "child"),
            "TRACKFLOW_EVENTS_TOPIC": conf.events_topic,
            "TRACKFLOW_DLQ_TOPIC": conf.dlq_topic,
            "PAUSED_MARKER": str(tmp_path / "paused"),
        }
    )
    script = CHILD.format(root=str(ROOT))
    # Batches of 2: [0,1] committed, [2,3] inserted and then the process is killed.
    first = subprocess.Popen([sys.executable, "-c", script, "pause", "2", "5"], env=env, cwd=ROOT)
    try:
        wait_for(lambda: (tmp_path / "paused").exists() or first.poll() is not None, timeout=120, interval=0.2)
        assert first.poll() is None, "the first runner ended before it paused"
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    # Batches of 3 from the committed offset 2: [2,3,4] (2 and 3 again).
    second = subprocess.run(
        [sys.executable, "-c", script, "drain", "3", "3"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert second.returncode == 0, second.stderr[-3000:]
    found = orjson.loads(second.stdout.strip().splitlines()[-1])
    assert found["committed"] == 3  # what the killed runner had not committed: records 2, 3 and 4
    check(found["before"], expected)
    assert found["after"]["clean_hours"] >= 1
    check(found["after"], expected)
