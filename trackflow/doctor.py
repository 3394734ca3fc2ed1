"""``trackflow doctor``: is everything in place for the first event? Each check says how to fix itself.

The checks run in steps (Kafka, then ClickHouse), each announced before it
runs and bounded to about :data:`STEP_TIMEOUT_S`, so a missing broker costs
seconds, not half a minute of silence. Kafka's failures are named as
librdkafka reports them (refused credentials, a failed TLS handshake, nothing
listening). ClickHouse is read through a running ``trackflow dev`` when that
process holds the embedded engine, as ``trackflow sql`` does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from chalicelib.settings import Settings

Check = tuple[str, bool, str]
Step = tuple[str, Callable[[], Iterator[Check]]]
STEP_TIMEOUT_S = 4.0


def steps(settings: Settings) -> list[Step]:
    """(what is checked, the checks) in order: the broker and topics, then ClickHouse and its migrations."""
    return [
        (f"Kafka at {settings.bootstrap_servers}", lambda: _kafka(settings)),
        (f"ClickHouse at {settings.clickhouse.location}", lambda: _clickhouse(settings)),
    ]


def checks(settings: Settings) -> Iterator[Check]:
    """(name, ok, detail) of every step, in order."""
    for _, run in steps(settings):
        yield from run()


def _kafka(settings: Settings) -> Iterator[Check]:
    from trackflow.topics import describe_topics

    bootstrap = settings.bootstrap_servers
    try:
        states = describe_topics(
            bootstrap,
            [settings.events_topic, settings.dlq_topic],
            security=settings.kafka_security,
            timeout_s=STEP_TIMEOUT_S,
        )
    except Exception as exc:  # unreachable, refused credentials, a TLS mismatch: each says why
        advice = (
            "check KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD (or KAFKA_SASL_SECRET_ARN) and KAFKA_SASL_MECHANISM"
            if "authentication failed" in str(exc)
            else "check KAFKA_SECURITY_PROTOCOL and KAFKA_SSL_CA_FILE"
            if "TLS" in str(exc)
            else "start one (`trackflow kafka`) or check KAFKA_BOOTSTRAP_SERVERS and KAFKA_SECURITY_PROTOCOL"
        )
        yield "broker", False, f"{exc}; {advice}"
        return
    yield "broker", True, f"{bootstrap} answers ({settings.kafka_security.describe()})"
    for topic in (settings.events_topic, settings.dlq_topic):
        state = states.get(topic)
        if state is None:
            yield "topic", False, f"{topic} is missing: run `trackflow topics create`"
        elif state.under_replicated:
            yield "topic", False, f"{topic}: {state.describe()}: a broker is down or behind"
        elif state.replication_factor < 2 and settings.stage != "dev":
            yield (
                "topic",
                False,
                f"{topic}: {state.describe()}: one copy loses events with its broker; outside dev recreate it "
                "with `trackflow topics create` on a cluster of three brokers",
            )
        else:
            yield "topic", True, f"{topic}: {state.describe()}"


def _reader(settings: Settings) -> tuple[Callable[[str], list[tuple[Any, ...]]], str]:
    """A way to run a read-only query, and where it goes: a running dev server's, or a connection."""
    from chalicelib.storage.clickhouse import connect
    from trackflow.sqlgate import query_running_dev

    if settings.clickhouse.embedded:
        probe = query_running_dev(settings.data_dir, "SELECT 1", timeout_s=STEP_TIMEOUT_S)
        if probe is not None:

            def through_dev(sql: str) -> list[tuple[Any, ...]]:
                answer = query_running_dev(settings.data_dir, sql, timeout_s=STEP_TIMEOUT_S)
                return [tuple(row) for row in (answer or {}).get("rows", [])]

            return through_dev, " (through the running `trackflow dev`)"
    client = connect(settings.clickhouse)
    return (lambda sql: list(client.query(sql).result_rows)), ""


def _clickhouse(settings: Settings) -> Iterator[Check]:
    from chalicelib.storage.migrations import load_migrations
    from trackflow.dev import MIGRATIONS_DIR

    where = settings.clickhouse.location
    try:
        query, via = _reader(settings)
        version = query("SELECT version()")[0][0]
    except Exception as exc:  # any failure means "not reachable"; the message says why
        yield "clickhouse", False, f"{where}: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}"
        return
    yield "clickhouse", True, f"{where}, version {version}{via}"
    database = settings.clickhouse.database
    wanted = {m.version: m.name for m in load_migrations(MIGRATIONS_DIR, database=database)}
    try:
        applied = {row[0] for row in query(f"SELECT version FROM {database}.schema_migrations FINAL")}
    except Exception:
        applied = set()
    missing = [name for version, name in sorted(wanted.items()) if version not in applied]
    if missing:
        yield "migrations", False, f"{len(missing)} not applied ({', '.join(missing)}): run `trackflow migrate`"
    else:
        yield "migrations", True, f"all {len(wanted)} applied to database {database}"
