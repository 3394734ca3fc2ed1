"""The ``trackflow`` command: local development, the trigger runner, migrations, SQL.

Its Kafka commands (brokers, topics, replay) are in :mod:`trackflow.cli_kafka`, its AWS ones
(package, deploy) in :mod:`trackflow.cli_aws`; what they share in :mod:`trackflow.cli_common`.
"""

from __future__ import annotations

import csv
import json
import logging
import signal
import sys
from typing import Any

import click

from chalicelib.errors import TrackflowError
from chalicelib.settings import Settings
from trackflow.cli_common import (
    configure_logging,
    counting,
    current_settings,
    describe_policy,
    mapping_policy,
    wait_for_signal,
)
from trackflow.runner import DEFAULT_BATCH_SIZE

logger = logging.getLogger("trackflow")


_settings = current_settings  # the name the command modules and projects_cli use
_wait_for_signal = wait_for_signal
_mapping_policy = mapping_policy


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log debug details.")
def main(verbose: bool) -> None:
    """TrackFlow: self-hosted real-time event tracking.

    Settings come from the environment (KAFKA_BOOTSTRAP_SERVERS, CLICKHOUSE_URL,
    TRACKFLOW_DATA_DIR, ...); with none set everything runs embedded.
    """
    configure_logging(verbose)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address every server binds to.")
@click.option("--port", "api_port", default=8000, show_default=True, help="Collect API port.")
@click.option("--tracker-port", default=8080, show_default=True, help="Port serving tracker/dist.")
@click.option(
    "--broker-port",
    default=9092,
    show_default=True,
    help="Embedded broker port (when KAFKA_BOOTSTRAP_SERVERS is unset).",
)
@click.option(
    "--kafka",
    "kafka_kind",
    type=click.Choice(["embedded", "apache"]),
    default="embedded",
    show_default=True,
    help="Broker to start when KAFKA_BOOTSTRAP_SERVERS is unset: the in-memory embedded one, "
    "or Apache Kafka (durable; needs java and mvn; as `trackflow kafka`).",
)
@click.option(
    "--batch-size",
    default=DEFAULT_BATCH_SIZE,
    show_default=True,
    help="Records per ingest invocation (the mapping's BatchSize).",
)
@click.option(
    "--batching-window",
    default=0.25,
    show_default=True,
    help="Seconds to wait filling a batch (MaximumBatchingWindowInSeconds).",
)
def dev(
    host: str,
    api_port: int,
    tracker_port: int,
    broker_port: int,
    kafka_kind: str,
    batch_size: int,
    batching_window: float,
) -> None:
    """Run the whole pipeline in one process: broker, collect API, trigger runner, chDB."""
    from trackflow.dev import DevOptions, DevStack, banner

    settings = _settings()
    options = DevOptions(
        host=host,
        api_port=api_port,
        tracker_port=tracker_port,
        broker_port=broker_port,
        kafka=kafka_kind,
        batch_size=batch_size,
        batching_window_s=batching_window,
        policy=_mapping_policy(),
    )
    try:
        stack = DevStack(settings, options).start()
    except (TrackflowError, RuntimeError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(banner(stack))
    try:
        _wait_for_signal()
    finally:
        click.echo("\nstopping: collect answers 503 now; ingesting what the broker holds (Ctrl-C again to quit)...")
        signal.signal(signal.SIGINT, signal.default_int_handler)
        drained = stack.stop(progress=lambda line: click.echo(f"  {line}"))
        records = stack.runner.stats.records if stack.runner else 0
        click.echo(
            f"stopped; {records} Kafka record(s) ingested this run"
            + ("" if drained else " (the broker still held some: they are lost with the embedded broker)")
        )


@main.command()
@click.option("--batch-size", default=DEFAULT_BATCH_SIZE, show_default=True, help="Records per invocation (BatchSize).")
@click.option(
    "--batching-window",
    default=0.25,
    show_default=True,
    help="Seconds to fill a batch (MaximumBatchingWindowInSeconds).",
)
@click.option("--group", default="trackflow-ingest", show_default=True, help="Consumer group id.")
def trigger(batch_size: int, batching_window: float, group: str) -> None:
    """Run only the Kafka trigger: consume the events topic and invoke the ingest function.

    Needs KAFKA_BOOTSTRAP_SERVERS. With the embedded ClickHouse it migrates it
    and holds it, so it must not run beside `trackflow dev` (chDB allows one
    process per data directory); `trackflow sql` reads through it meanwhile.
    """
    from chalicelib import runtime
    from trackflow.runner import TriggerRunner

    settings = _settings()
    if settings.embedded_kafka:
        raise click.ClickException(
            "set KAFKA_BOOTSTRAP_SERVERS (host:port of your broker); `trackflow dev` starts one for you"
        )
    runtime.configure(settings=settings)
    import app as app_module
    from trackflow.mapping import destination_for, failure_topic
    from trackflow.topics import DEFAULT_PARTITIONS, ensure_topics, topic_plan

    policy = _mapping_policy()
    gate = None
    try:
        # the topics must exist before the consumer subscribes, or it waits for a metadata refresh
        ensure_topics(
            settings.bootstrap_servers,
            topic_plan(settings, partitions=DEFAULT_PARTITIONS, failure_topic=failure_topic(policy)),
            security=settings.kafka_security,
        )
        if settings.clickhouse.embedded:  # as `trackflow dev` does: this process owns the engine
            from trackflow.dev import migrate_clickhouse, open_sql_gate

            applied = migrate_clickhouse(settings)
            if applied:
                click.echo(f"applied migrations: {', '.join(applied)}")
            gate = open_sql_gate(settings)  # `trackflow sql` reads through it while this process runs
        runtime.writer()
    except TrackflowError as exc:
        raise click.ClickException(exc.message) from None
    runner = TriggerRunner(
        app_module.ingest,
        bootstrap_servers=settings.bootstrap_servers,
        topic=settings.events_topic,
        group_id=group,
        batch_size=batch_size,
        batching_window_s=batching_window,
        security=settings.kafka_security,
        policy=policy,
        destination=destination_for(
            policy, bootstrap_servers=settings.bootstrap_servers, security=settings.kafka_security, mapping_id=group
        ),
    )
    from trackflow.compactor import Compactor

    compactor = Compactor(
        runtime.rollup_client(),
        interval_s=settings.rollup_interval_s,
        settle_s=settings.rollup_settle_s,
        replica_lag_s=settings.clickhouse.replica_lag_s,
        after_round=runtime.expire_if_due,
    )
    compactor_thread = compactor.start_thread()
    thread = runner.start_thread()
    click.echo(f"consuming {settings.events_topic} from {settings.bootstrap_servers} as {group}; Ctrl-C stops")
    click.echo(f"a failing batch: {describe_policy(policy)}")
    _wait_for_signal()
    runner.stop()
    compactor.stop()
    thread.join(10)
    compactor_thread.join(30)
    if gate is not None:
        gate.stop()
    click.echo(f"stopped after {runner.stats.records} records in {runner.stats.batches} batches")


@main.command()
@click.option("-v", "--verbose", is_flag=True, help="Also show the Kafka and ClickHouse clients' own log lines.")
def doctor(verbose: bool) -> None:
    """Check what a deployment needs before its first event: broker, topics, ClickHouse, migrations.

    Each step is announced before it runs and takes a few seconds at most.
    While `trackflow dev` runs, ClickHouse is read through it. Example:

        trackflow doctor
    """
    from trackflow.doctor import steps

    noisy = [logging.getLogger(name) for name in ("kafka", "trackflow.topics", "urllib3")]
    levels = [log.level for log in noisy]
    if not verbose:  # each failure is in the check's own line; the clients' retries are noise here
        for log in noisy:
            log.setLevel(logging.CRITICAL)
    failed = 0
    try:
        for title, run in steps(_settings()):
            click.echo(f"checking {title} ...")
            for name, ok, detail in run():
                failed += not ok
                click.echo(f"  {'ok  ' if ok else 'FAIL'}  {name:12} {detail}")
    finally:
        for log, level in zip(noisy, levels, strict=True):
            log.setLevel(level)
    if failed:
        raise click.ClickException(f"{failed} check(s) failed")


@main.group()
def rollups() -> None:
    """Rollups for fast reports: see and compact what waits (reports are exact either way)."""


def _rollup_client() -> Any:
    from chalicelib.storage.clickhouse import connect

    settings = _settings()
    try:
        return connect(settings.clickhouse, database=settings.clickhouse.database)
    except TrackflowError as exc:
        raise click.ClickException(exc.message) from None


@rollups.command("status")
def rollups_status() -> None:
    """What waits for compaction: hours and their rows, the oldest, days waiting for the day tier."""
    from dataclasses import asdict

    from chalicelib.rollups.compaction import backlog

    for name, value in asdict(backlog(_rollup_client(), settle_s=_settings().rollup_settle_s)).items():
        shown = f"{value:.1f}" if isinstance(value, float) else f"{value:,}"
        click.echo(f"{name:18} {shown}")


@rollups.command("compact")
@click.option(
    "--settle",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="only hours without changes for this many seconds (0 while nothing writes)",
)
@click.option(
    "--for",
    "seconds",
    type=click.FloatRange(min=1),
    default=None,
    help="stop starting rounds after this many seconds (default: until nothing waits)",
)
def rollups_compact(settle: float, seconds: float | None) -> None:
    """Rebuild the rollups of every changed hour (and then day) from deduplicated events now.

    `trackflow dev`, `trackflow trigger` and the deployed `compact` function do
    this on their own every few seconds; run it after writing with
    `trackflow load --target table`, or against a ClickHouse server. Each
    round reads about two million event rows and prints a line.
    """
    import time

    from chalicelib.rollups.compaction import compact_all

    deadline = time.monotonic() + seconds if seconds is not None else None
    lag = _settings().clickhouse.replica_lag_s
    done = compact_all(_rollup_client(), settle_s=settle, deadline=deadline, replica_lag_s=lag)
    click.echo(f"compacted {done.summary()}")


@main.group()
def retention() -> None:
    """Retention: each project keeps its last N UTC days (`projects set --retention-days`, TRACKFLOW_RETENTION_DAYS).

    `trackflow dev`, `trackflow trigger` and the deployed `compact` function run
    it on their own every six hours.
    """


@retention.command("run")
@click.option("--wait", is_flag=True, help="Return only once ClickHouse has applied the deletes.")
def retention_run(wait: bool) -> None:
    """Delete now every event, rollup row, change mark and dead letter past its project's retention."""
    from datetime import UTC, datetime

    from chalicelib import runtime
    from chalicelib.storage.retention import expire

    settings = _settings()
    runtime.configure(settings=settings)
    done = expire(
        _rollup_client(),
        runtime.projects().all(),
        default_days=settings.retention_days,
        now=datetime.now(UTC),
        wait=wait,
        cluster=settings.clickhouse.cluster,
    )
    click.echo(f"kept from {done.default_first_day} (the default, {settings.retention_days} days)")
    for project_id, first in sorted(done.first_days.items()):
        click.echo(f"  {project_id}: kept from {first}")
    if not done.rows:
        click.echo("nothing had expired")
    for table, rows in done.rows.items():
        click.echo(f"  {table}: {rows:,} rows deleted{'' if wait else ' (ClickHouse applies it in the background)'}")


@main.command()
@click.option(
    "--cluster",
    help="Render ON CLUSTER with Replicated engines and local/Distributed pairs sharded by project "
    "(default: CLICKHOUSE_CLUSTER). docs/scaling.md.",
)
@click.option("--print", "print_only", is_flag=True, help="Print the statements instead of running them.")
def migrate(cluster: str | None, print_only: bool) -> None:
    """Apply the ClickHouse migrations in infra/clickhouse/migrations (idempotent)."""
    from chalicelib.storage.migrations import bookkeeping, planned_statements
    from trackflow.dev import MIGRATIONS_DIR, migrate_clickhouse

    settings = _settings()
    cluster = cluster or settings.clickhouse.cluster
    database = settings.clickhouse.database
    try:
        if print_only:
            planned = planned_statements(MIGRATIONS_DIR, database=database, cluster=cluster)
            click.echo(";\n\n".join(bookkeeping(database, cluster)) + ";\n")
            for migration, statements in planned:
                click.echo(f"\n-- {migration.name}\n" + ";\n\n".join(statements) + ";")
            return
        applied = migrate_clickhouse(settings, cluster=cluster)
    except (TrackflowError, ValueError) as exc:
        raise click.ClickException(getattr(exc, "message", str(exc))) from None
    click.echo(f"applied: {', '.join(applied)}" if applied else "up to date")


def _print_table(result: dict[str, Any], fmt: str) -> None:
    columns, rows = result["columns"], result["rows"]
    if fmt == "json":
        click.echo(json.dumps([dict(zip(columns, row, strict=True)) for row in rows], indent=2, default=str))
        return
    if fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
        return
    cells = [[str(c) for c in columns]] + [["" if v is None else str(v) for v in row] for row in rows]
    widths = [min(60, max(len(r[i]) for r in cells)) for i in range(len(columns))]
    for n, row in enumerate(cells):
        click.echo("  ".join(v[:60].ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            click.echo("  ".join("-" * w for w in widths))
    click.echo(f"({len(rows)} rows)")


@main.command()
@click.argument("query")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
def sql(query: str, fmt: str) -> None:
    """Run a read-only QUERY against TrackFlow's ClickHouse and print the result.

    Works whether or not `trackflow dev` is running: when it holds the embedded
    engine the query goes through it.  Example:

        trackflow sql "SELECT type, count() FROM events FINAL GROUP BY type"
    """
    from chalicelib.storage.clickhouse import connect
    from trackflow.sqlgate import query_running_dev, run_query

    settings = _settings()
    try:
        result = query_running_dev(settings.data_dir, query) if settings.clickhouse.embedded else None
        if result is None:
            client = connect(settings.clickhouse, database=settings.clickhouse.database, read_only=True)
            result = run_query(client, query)
    except (TrackflowError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:  # ClickHouse's own error for a bad query
        raise click.ClickException(str(exc).strip().splitlines()[0]) from None
    _print_table(result, fmt)


@main.command()
@click.option(
    "--events", "count", default=100_000, show_default=True, type=click.IntRange(min=1), help="How many events."
)
@click.option(
    "--target",
    type=click.Choice(["pipeline", "table"]),
    default="pipeline",
    show_default=True,
    help="pipeline: produce to Kafka for the trigger to ingest (run `trackflow dev` first); "
    "table: insert straight into ClickHouse (needs the embedded engine free, i.e. no `trackflow dev`).",
)
@click.option(
    "--projects",
    default="development,shop-demo,blog-demo",
    show_default=True,
    help="Comma-separated project ids; the first gets most traffic. Projects that do not exist are created "
    "(the development project is built in).",
)
@click.option(
    "--days", default=30.0, show_default=True, type=click.FloatRange(min=0.01), help="Spread over this many days."
)
@click.option("--end", "end_day", default=None, help="Last day (YYYY-MM-DD, UTC); default: now.")
@click.option("--seed", type=int, default=None, help="Same seed and --end, same events (default: a new seed each run).")
@click.option("--batch-size", default=10_000, show_default=True, type=click.IntRange(min=1))
def load(
    count: int, target: str, projects: str, days: float, end_day: str | None, seed: int | None, batch_size: int
) -> None:
    """Generate realistic traffic: visitors, sessions, SPA paths, referrers, clicks, errors, bots.

    Examples:

        trackflow load --events 50000                 # into a running `trackflow dev`

        trackflow load --events 10000000 --target table
    """
    import random
    import time as _time
    from datetime import UTC, datetime, timedelta

    from trackflow.load import Traffic, ensure_projects, sites, table_writer, to_pipeline, to_table

    settings = _settings()
    ids = [p.strip() for p in projects.split(",") if p.strip()]
    if not ids:
        raise click.BadParameter("name at least one project id", param_hint="--projects")
    for project in ensure_projects(_project_store(settings), ids, stage=settings.stage):
        click.echo(
            f"created project {project.project_id!r} ({project.name}); its read token, which the dashboard "
            f"asks for: {project.read_token}"
        )
    if end_day is None:
        end = datetime.now(UTC)
    else:
        try:
            end = datetime.fromisoformat(end_day).replace(tzinfo=UTC) + timedelta(days=1)
        except ValueError:
            raise click.BadParameter(f"{end_day!r} is not YYYY-MM-DD", param_hint="--end") from None
    if seed is None:
        seed = random.randrange(2**31)  # a rerun must not repeat event ids (they would count once)
    end_ms = int(end.timestamp() * 1000)
    events = Traffic(sites(ids), end_ms=end_ms, days=days, seed=seed).events(count)
    try:
        if target == "table":
            writer = table_writer(settings)

            def sink(progress: Any) -> int:
                from chalicelib.rollups.compaction import compact_all

                written = to_table(events, writer, batch_size=batch_size, progress=progress)
                click.echo("compacting the rollups of the hours written (so reports read them)...")
                done = compact_all(_rollup_client(), settle_s=0)  # nothing else writes: they can catch up now
                click.echo(f"compacted {done.summary()}")
                return written
        else:
            sender = _pipeline_sender(settings)

            def sink(progress: Any) -> int:
                try:
                    return to_pipeline(events, sender, settings.events_topic, batch_size=batch_size, progress=progress)
                finally:
                    sender.close()

        started = _time.monotonic()
        with counting(count, f"{count:,} events -> {target}") as advance:
            written = sink(advance)
    except TrackflowError as exc:
        raise click.ClickException(exc.message) from None
    elapsed = _time.monotonic() - started
    click.echo(
        f"{written:,} events in {elapsed:.1f} s ({written / elapsed:,.0f}/s) for {', '.join(ids)} (--seed {seed})"
    )


def _project_store(settings: Settings) -> Any:
    from chalicelib import runtime

    runtime.configure(settings=settings)
    return runtime.projects()


def _pipeline_sender(settings: Settings) -> Any:
    from chalicelib.health import broker_reachable
    from chalicelib.kafka.producer import KafkaSender, backend_factory

    bootstrap = settings.bootstrap_servers
    reachable = broker_reachable(bootstrap)
    if not reachable["ok"]:
        raise click.ClickException(
            f"no Kafka broker at {bootstrap} ({reachable['error']}): start `trackflow dev` (or `make dev`) first, "
            "set KAFKA_BOOTSTRAP_SERVERS, or use --target table"
        )
    factory = backend_factory(
        settings.kafka_client, bootstrap, timeout_s=30.0, client_id="trackflow-load", security=settings.kafka_security
    )
    return KafkaSender(factory, timeout_s=30.0, retry_after=1)


def _register() -> None:
    from trackflow.cli_aws import deploy, package
    from trackflow.cli_kafka import broker, kafka, replay, topics
    from trackflow.erase_cli import erase
    from trackflow.export_cli import export
    from trackflow.goals_cli import funnels, goals
    from trackflow.projects_cli import projects

    for command in (projects, goals, funnels, package, deploy, broker, kafka, topics, replay, export, erase):
        main.add_command(command)


_register()

if __name__ == "__main__":
    main()
