"""``trackflow doctor``: is everything in place for the first event? Each check says how to fix itself."""

from __future__ import annotations

from collections.abc import Iterator

from chalicelib.settings import Settings

Check = tuple[str, bool, str]


def checks(settings: Settings) -> Iterator[Check]:
    """(name, ok, detail) for the broker, the topics, ClickHouse and its migrations, in that order."""
    from trackflow.topics import describe_topics

    bootstrap = settings.bootstrap_servers
    try:
        states = describe_topics(
            bootstrap, [settings.events_topic, settings.dlq_topic], security=settings.kafka_security
        )
    except Exception as exc:  # unreachable, refused credentials, a TLS mismatch: each says why
        yield (
            "broker",
            False,
            f"{exc}; start one (`trackflow kafka`) or check KAFKA_BOOTSTRAP_SERVERS and KAFKA_SECURITY_PROTOCOL",
        )
    else:
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
    yield from _clickhouse(settings)


def _clickhouse(settings: Settings) -> Iterator[Check]:
    from chalicelib.clickhouse import connect
    from chalicelib.migrations import load_migrations
    from trackflow.dev import MIGRATIONS_DIR

    where = settings.clickhouse.location
    try:
        client = connect(settings.clickhouse)
        version = client.query("SELECT version()").result_rows[0][0]
    except Exception as exc:  # any failure means "not reachable"; the message says why
        yield "clickhouse", False, f"{where}: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}"
        return
    yield "clickhouse", True, f"{where}, version {version}"
    database = settings.clickhouse.database
    wanted = {m.version: m.name for m in load_migrations(MIGRATIONS_DIR, database=database)}
    try:
        applied = {
            row[0] for row in client.query(f"SELECT version FROM {database}.schema_migrations FINAL").result_rows
        }
    except Exception:
        applied = set()
    missing = [name for version, name in sorted(wanted.items()) if version not in applied]
    if missing:
        yield "migrations", False, f"{len(missing)} not applied ({', '.join(missing)}): run `trackflow migrate`"
    else:
        yield "migrations", True, f"all {len(wanted)} applied to database {database}"
