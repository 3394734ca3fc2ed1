"""The ``trackflow`` command: local development, the trigger runner, migrations, SQL."""

from __future__ import annotations

import csv
import json
import logging
import signal
import sys
import threading
import time
from typing import Any

import click

from chalicelib.errors import TrackflowError
from chalicelib.settings import Settings, load_settings
from trackflow.runner import DEFAULT_BATCH_SIZE

logger = logging.getLogger("trackflow")


def _settings() -> Settings:
    try:
        return load_settings()
    except TrackflowError as exc:
        raise click.ClickException(exc.message) from None


def _wait_for_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log debug details.")
def main(verbose: bool) -> None:
    """TrackFlow: self-hosted real-time event tracking.

    Settings come from the environment (KAFKA_BOOTSTRAP_SERVERS, CLICKHOUSE_URL,
    TRACKFLOW_DATA_DIR, ...); with none set everything runs embedded.
    """
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("kafka", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.ERROR)


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
        cluster=settings.clickhouse.cluster,
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


def _mapping_policy() -> Any:
    """The mapping's failure settings from TRACKFLOW_* (trackflow.mapping), or a usage error naming the variable."""
    from trackflow.mapping import ConfigurationError, MappingPolicy

    try:
        return MappingPolicy.from_env()
    except ConfigurationError as exc:
        raise click.UsageError(str(exc)) from None


def describe_policy(policy: Any) -> str:
    if policy.retries is None:
        return "retried until it succeeds (no on-failure destination)"
    bisect = ", split in halves first" if policy.bisect else ""
    return f"retried {policy.retries} times{bisect}, then sent to {policy.on_failure}"


@main.command()
@click.option(
    "--topic",
    default=None,
    help="The failure topic to read [default: the one TRACKFLOW_ON_FAILURE_DESTINATION names, trackflow.events.failed].",
)
@click.option("--s3", "s3_url", default=None, metavar="s3://BUCKET/PREFIX", help="Read an S3 destination instead.")
@click.option("--group", default="trackflow-replay", show_default=True, help="Consumer group that keeps the position.")
@click.option(
    "--to-topic",
    is_flag=True,
    help="Put the records back on the events topic for the running trigger to ingest, instead of ingesting here "
    "(for when `trackflow dev` holds the embedded ClickHouse).",
)
def replay(topic: str | None, s3_url: str | None, group: str, to_topic: bool) -> None:
    """Ingest again what the Kafka mapping handed to its on-failure destination.

    Reads AWS's invocation records (or plain records) from the failure topic,
    or from S3, and writes their events through the same ingest the function
    runs. Events already stored count once, so running it twice is harmless;
    its position is committed as it goes, so an interrupted replay resumes.
    Run it once the cause (a ClickHouse outage, say) is fixed.
    """
    from chalicelib import runtime
    from chalicelib.ingest import ingest as ingest_batch
    from trackflow.mapping import failure_topic
    from trackflow.replay import ReplayStats, replay_s3, replay_topic

    settings = _settings()
    runtime.configure(settings=settings)
    if to_topic:
        sender = runtime.sender()

        def ingest(payload: dict[str, Any]) -> dict[str, int]:
            from chalicelib.kafka_event import decode_records

            records = decode_records(payload)
            messages = [(r.key, r.value or b"", list(r.headers.items())) for r in records]
            sender.send(settings.events_topic, messages)
            return {"records": len(records)}

    else:
        try:
            writer = runtime.writer()
        except TrackflowError as exc:
            raise click.ClickException(f"{exc.message} (or use --to-topic while `trackflow dev` runs)") from None

        def ingest(payload: dict[str, Any]) -> dict[str, int]:
            return ingest_batch(
                payload, writer=writer, dlq=runtime.sender(), dlq_topic=settings.dlq_topic, now_ms=runtime.now_ms
            )

    shown = [0.0]

    def progress(stats: ReplayStats) -> None:
        if time.monotonic() - shown[0] >= 1.0:
            shown[0] = time.monotonic()
            click.echo(f"  {stats.line()}")

    try:
        if s3_url:
            import boto3

            bucket, _, prefix = s3_url.removeprefix("s3://").partition("/")
            state = settings.data_dir / f"replay-{bucket}.json"
            click.echo(f"replaying s3://{bucket}/{prefix} (position in {state})")
            stats = replay_s3(boto3.client("s3"), bucket, prefix, ingest=ingest, state=state, progress=progress)
        else:
            source = topic or failure_topic(_mapping_policy()) or "trackflow.events.failed"
            click.echo(f"replaying {source} from {settings.bootstrap_servers} as {group}")
            stats = replay_topic(
                settings.bootstrap_servers,
                source,
                ingest=ingest,
                group=group,
                security=settings.kafka_security,
                progress=progress,
            )
    except TrackflowError as exc:
        raise click.ClickException(exc.message) from None
    finally:
        runtime.sender().close()
    where = f"put back on {settings.events_topic}" if to_topic else "replayed"
    click.echo(f"{where}: {stats.line()}")
    for problem in stats.unreadable[:10]:
        click.echo(f"  unreadable: {problem}", err=True)


@main.group()
def topics() -> None:
    """Kafka topics TrackFlow uses: create them on any cluster the settings point at."""


@topics.command("create")
@click.option("--partitions", default=4, show_default=True, type=click.IntRange(min=1), help="Of the events topic.")
@click.option(
    "--replication-factor",
    type=click.IntRange(min=1),
    default=None,
    help="Copies of each partition [default: 3, or the brokers' count when fewer].",
)
@click.option(
    "--min-insync",
    type=click.IntRange(min=1),
    default=None,
    help="Copies that must have a write before it is acknowledged [default: 2, or the replication factor].",
)
@click.option(
    "--retention-hours", default=168, show_default=True, type=click.IntRange(min=1), help="How long Kafka keeps events."
)
@click.option(
    "--failure-topic", default="trackflow.events.failed", show_default=True, help="The mapping's ('' for none)."
)
def topics_create(
    partitions: int, replication_factor: int | None, min_insync: int | None, retention_hours: int, failure_topic: str
) -> None:
    """Create the events topic, its dead-letter topic and the failure topic where they are missing.

    New topics get MSK's replication (3 copies, 2 in sync, or what the cluster
    has room for). An existing topic with fewer partitions or copies is refused
    with what to do: a broker that creates topics on first use makes one-copy
    topics that lose events with the broker that holds them. The events
    topic's partitions bound how many ingest invocations run at once.
    """
    from trackflow.topics import describe_topics, ensure_topics, topic_plan

    settings = _settings()
    wanted = topic_plan(settings, partitions=partitions, failure_topic=failure_topic or None)
    try:
        created = ensure_topics(
            settings.bootstrap_servers,
            wanted,
            replication_factor=replication_factor,
            min_insync=min_insync,
            retention_ms=retention_hours * 3_600_000,
            security=settings.kafka_security,
            verify=True,
        )
        states = describe_topics(settings.bootstrap_servers, list(wanted), security=settings.kafka_security)
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None
    for name in wanted:
        state = states.get(name)
        detail = "?" if state is None else state.describe()
        click.echo(f"{name}: {'created' if name in created else 'exists'}, {detail}")


@main.command()
def doctor() -> None:
    """Check what a deployment needs before its first event: broker, topics, ClickHouse, migrations."""
    from trackflow.doctor import checks

    failed = 0
    for name, ok, detail in checks(_settings()):
        failed += not ok
        click.echo(f"{'ok  ' if ok else 'FAIL'}  {name:12} {detail}")
    if failed:
        raise click.ClickException(f"{failed} check(s) failed")


@main.group()
def rollups() -> None:
    """Rollups for fast reports: see and compact what waits (reports are exact either way)."""


def _rollup_client() -> Any:
    from chalicelib.clickhouse import connect

    settings = _settings()
    try:
        return connect(settings.clickhouse, database=settings.clickhouse.database)
    except TrackflowError as exc:
        raise click.ClickException(exc.message) from None


@rollups.command("status")
def rollups_status() -> None:
    """How many (project, day) pairs have events, are compacted, and wait."""
    from chalicelib.rollups import status

    for name, value in status(_rollup_client()).items():
        click.echo(f"{name:12} {value}")


@rollups.command("compact")
@click.option(
    "--settle",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="only days without changes for this many seconds (0 while nothing writes)",
)
def rollups_compact(settle: float) -> None:
    """Rebuild the rollups of every changed day from deduplicated events now.

    `trackflow dev`, `trackflow trigger` and the deployed `compact` function do
    this on their own every few seconds; run it after writing with
    `trackflow load --target table`, or against a ClickHouse server.
    """
    from chalicelib.rollups import compact_all

    days = compact_all(_rollup_client(), settle_s=settle, cluster=_settings().clickhouse.cluster)
    click.echo(f"compacted {days} day(s)")


@main.command()
@click.option(
    "--cluster",
    help="Render ON CLUSTER with Replicated engines and local/Distributed pairs sharded by project "
    "(default: CLICKHOUSE_CLUSTER). docs/scaling.md.",
)
@click.option("--print", "print_only", is_flag=True, help="Print the statements instead of running them.")
def migrate(cluster: str | None, print_only: bool) -> None:
    """Apply the ClickHouse migrations in infra/clickhouse/migrations (idempotent)."""
    from chalicelib.migrations import bookkeeping, planned_statements
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


# `package` and `deploy` build for the same choice of Lambda CPU.
_ARCH_OPTION = click.option(
    "--arch",
    "architecture",
    type=click.Choice(["x86_64", "arm64"]),
    default="x86_64",
    show_default=True,
    help="Lambda architecture the native wheels are for.",
)


@main.command()
@_ARCH_OPTION
@click.option("--stage", default="prod", show_default=True, help="Chalice stage (.chalice/config.json).")
@click.option(
    "--out", type=click.Path(file_okay=False), default="build/package", show_default=True, help="Output folder."
)
def package(architecture: str, stage: str, out: str) -> None:
    """Build the Lambda bundle (deployment.zip, python3.12) and template (sam.json).

    Fails when a pinned requirement has no wheel for the runtime and
    architecture, or the zip holds native code Lambda cannot load.
    """
    from pathlib import Path

    from trackflow.dev import ROOT
    from trackflow.package import PackageError, build

    try:
        bundle = build(
            ROOT, Path(out), architecture=architecture, stage=stage, progress=lambda step: click.echo(f"- {step}")
        )
    except PackageError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"{bundle.zip_path}: {bundle.zipped_bytes / 1e6:.1f} MB zipped, {bundle.unzipped_bytes / 1e6:.1f} MB unzipped "
        f"({architecture}, {len(bundle.requirements)} requirements checked); template {bundle.directory / 'sam.json'}"
    )


@main.command()
@click.option("--stage", default="prod", show_default=True, help="Chalice stage to package.")
@click.option("--stack-name", default="trackflow", show_default=True, help="CloudFormation stack.")
@click.option("--bucket", help="S3 bucket for the bundle and template (needed unless --bootstrap-only).")
@_ARCH_OPTION
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="A stack parameter (repeatable), e.g. --param KafkaSource=msk. Kafka and ClickHouse ones default "
    "to this machine's KAFKA_* / CLICKHOUSE_* settings.",
)
@click.option("--project", "project_name", default="My site", show_default=True, help="First project's name.")
@click.option("--origin", "origins", multiple=True, help="A site allowed to send to the first project (repeatable).")
@click.option("--partitions", default=4, show_default=True, type=click.IntRange(min=1), help="Of the events topic.")
@click.option(
    "--script-src",
    default="/tracker.js",
    show_default=True,
    help="Where your pages load the tracker from (copy tracker/dist/tracker.js there).",
)
@click.option("--bootstrap-only", is_flag=True, help="Skip packaging and the stack: topics, migrations, project.")
@click.option("--skip-topics", is_flag=True, help="The topics exist already (made with `trackflow topics create`).")
@click.option(
    "--allow-dev-stage",
    is_flag=True,
    help="Say it twice: deploy --stage dev to AWS (a public development salt, bot traffic kept).",
)
def deploy(
    stage: str,
    stack_name: str,
    bucket: str | None,
    architecture: str,
    params: tuple[str, ...],
    project_name: str,
    origins: tuple[str, ...],
    partitions: int,
    script_src: str,
    bootstrap_only: bool,
    skip_topics: bool,
    allow_dev_stage: bool,
) -> None:
    """Deploy to AWS: package, upload, stack, topics, migrations, first project, snippet.

    Uses the AWS credentials and region boto3 finds (AWS_PROFILE, AWS_DEFAULT_REGION; not
    AWS_REGION), creates the --bucket there when it does not exist, and reaches Kafka and
    ClickHouse from this machine with the KAFKA_* and CLICKHOUSE_* settings. docs/deploy.md
    walks through it, with the IAM permissions the deployer needs.
    """
    import tempfile
    from pathlib import Path

    import boto3

    from trackflow import deploy as steps
    from trackflow.dev import ROOT
    from trackflow.package import PackageError, build

    overrides = dict(p.split("=", 1) for p in params if "=" in p)
    if len(overrides) != len(params):
        raise click.BadParameter("use KEY=VALUE", param_hint="--param")
    settings = _settings()

    def say(step: str) -> None:
        click.echo(f"- {step}")

    if stage == "dev" and not allow_dev_stage:
        raise click.UsageError(
            "--stage dev deploys a development configuration (a public salt for visitor hashes, bot traffic kept); "
            "use --stage prod, or say --allow-dev-stage as well if you mean it"
        )
    session = boto3.session.Session()
    try:
        region = steps.aws_region(session)
        say(f"AWS region {region}")
        cloudformation = session.client("cloudformation")
        if not skip_topics:  # before the stack: nothing may produce to a topic that does not exist yet
            steps.create_topics(
                settings, partitions=partitions, failure_topic=steps.failure_topic(overrides), progress=say
            )
        if bootstrap_only:
            outputs = steps.stack_outputs(cloudformation, stack_name)
        else:
            if not bucket:
                raise click.UsageError("--bucket is needed to upload the bundle (or use --bootstrap-only)")
            creating = steps.is_new_stack(cloudformation, stack_name)
            password = settings.clickhouse.password
            if password and "ClickHousePasswordSecretArn" not in overrides:
                overrides["ClickHousePasswordSecretArn"] = steps.clickhouse_secret(
                    session.client("secretsmanager"),
                    stack_name,
                    password,
                    kms_key=overrides.get("SecretsKmsKeyArn"),
                    progress=say,
                )
            parameters = steps.stack_parameters(settings, overrides, creating=creating)
            s3 = session.client("s3")
            steps.ensure_bucket(s3, bucket, region, say)
            with tempfile.TemporaryDirectory() as scratch:
                say(f"packaging for {architecture}")
                bundle = build(ROOT, Path(scratch) / "package", architecture=architecture, stage=stage, progress=say)
                code = steps.upload(s3, bucket, stack_name, bundle.zip_path.read_bytes(), ".zip", say)
                body = steps.template_for(bundle.directory / "sam.json", bucket, code)
                declared = list(json.loads(body)["Parameters"])
                key = steps.upload(s3, bucket, stack_name, body.encode(), ".json", say)
            outputs = steps.deploy_stack(
                cloudformation,
                stack_name,
                template_url=f"{s3.meta.endpoint_url}/{bucket}/{key}",
                parameters=parameters,
                declared=declared,
                progress=say,
            )
        deployed = steps.bootstrap(
            settings,
            outputs,
            dynamodb=session.resource("dynamodb"),
            project_name=project_name,
            origins=origins,
            script_src=script_src,
            progress=say,
        )
    except (steps.DeployError, PackageError, TrackflowError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None
    for name, value in sorted(deployed.outputs.items()):
        click.echo(f"{name}: {value}")
    click.echo(f"\nProject {deployed.project.name} ({deployed.project.project_id})")
    click.echo(f"  API key:    {deployed.project.api_keys[0]}")
    click.echo(f"  read token: {deployed.project.read_token}  (the dashboard and stats API; keep it secret)")
    click.echo("\nPaste into your pages, just before </head>:\n")
    click.echo(deployed.snippet)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=9092, show_default=True)
def broker(host: str, port: int) -> None:
    """Run only the embedded Kafka-compatible broker (memory only) until Ctrl-C."""
    from trackflow.broker import BrokerError, EmbeddedBroker

    try:
        running = EmbeddedBroker(host=host, port=port).start()
    except BrokerError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"broker listening on {running.bootstrap_servers} (pid {running.pid}); Ctrl-C stops it")
    try:
        _wait_for_signal()
    finally:
        running.stop()


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=9092, show_default=True, help="The (first) broker's listener.")
@click.option("--controller-port", default=9093, show_default=True, help="The KRaft controller's listener.")
@click.option("--heap", default=None, help="The JVM's maximum heap (-Xmx) [default: 512m; 384m each in a cluster].")
@click.option(
    "--brokers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 9),
    help="How many brokers; with more than one, a separate controller and MSK's defaults (3 copies, 2 in sync).",
)
@click.option(
    "--sasl-ssl",
    "sasl_port",
    type=int,
    default=None,
    metavar="PORT",
    help="Also open a SASL_SSL listener (TLS + SCRAM-SHA-512) on PORT, e.g. 9094, and print how to use it.",
)
def kafka(host: str, port: int, controller_port: int, heap: str | None, brokers: int, sasl_port: int | None) -> None:
    """Run Apache Kafka (KRaft) from Maven Central, durable in <data dir>, until Ctrl-C.

    The first start resolves the broker's jars with Maven (about 45 MB, needs
    java and mvn) and formats the storage; later starts reuse both, with the
    topics, messages and committed offsets of the last run. Then, in another
    terminal:

        KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 make dev

    --brokers 3 runs a cluster as MSK does (<data dir>/kafka-cluster): a
    controller on PORT+1 and brokers on PORT, PORT+2, PORT+4; no topic is
    created on first use, topics get 3 copies of which 2 must have a write.
    Create the topics with `trackflow topics create` before producing.

    With --sasl-ssl 9094 (one broker) it also serves TLS (a throwaway CA made in
    <data dir>/kafka/tls) and SCRAM-SHA-512 for the user `trackflow`, and
    prints the KAFKA_* settings a client needs.
    """
    from trackflow.broker import BrokerError
    from trackflow.kafka import DEFAULT_HEAP, ApacheKafka
    from trackflow.kafka_cluster import KafkaCluster

    settings = _settings()
    if brokers > 1:
        if sasl_port is not None:
            raise click.UsageError("--sasl-ssl serves one broker; leave out --brokers, or --sasl-ssl")
        home = settings.data_dir / "kafka-cluster"
        click.echo(f"starting {brokers} Apache Kafka brokers and a controller in {home}...")
        cluster = KafkaCluster(home, brokers=brokers, host=host, port=port, heap=heap)
        try:
            cluster.start()
        except BrokerError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"controller pid {cluster.controller.pid} on {host}:{cluster.controller_port}")
        for node in cluster.nodes:
            click.echo(f"broker {node.node_id} pid {node.pid} on {node.bootstrap_servers} (log {node.log_path})")
        click.echo(
            f"Apache Kafka cluster listening on {cluster.bootstrap_servers}; Ctrl-C stops it.\n"
            f"Use it: export KAFKA_BOOTSTRAP_SERVERS={cluster.bootstrap_servers}; "
            ".venv/bin/trackflow topics create; make dev"
        )
        try:
            _wait_for_signal()
        finally:
            click.echo("stopping the cluster (each broker flushes its log first)...")
            cluster.stop()
        return
    home = settings.data_dir / "kafka"
    click.echo(f"starting Apache Kafka in {home} (the first start downloads its jars with Maven)...")
    try:
        running = ApacheKafka(
            home, host=host, port=port, controller_port=controller_port, heap=heap or DEFAULT_HEAP, sasl_port=sasl_port
        ).start()
    except BrokerError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"Apache Kafka listening on {running.bootstrap_servers} (pid {running.pid}, log {running.log_path}); "
        "Ctrl-C stops it.\n"
        f"Use it: KAFKA_BOOTSTRAP_SERVERS={running.bootstrap_servers} make dev"
    )
    if running.secure is not None:
        settings_lines = " \\\n  ".join(f"{name}={value}" for name, value in running.secure.env().items())
        click.echo(
            f"SASL_SSL listener on {running.secure.bootstrap_servers}; to use it:\n  {settings_lines} \\\n  make dev"
        )
    try:
        _wait_for_signal()
    finally:
        click.echo("stopping Apache Kafka (it flushes its log first)...")
        running.stop()


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
    from chalicelib.clickhouse import connect
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
    help="Comma-separated project ids; the first gets most traffic.",
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

    from trackflow.load import Traffic, sites, table_writer, to_pipeline, to_table

    settings = _settings()
    ids = [p.strip() for p in projects.split(",") if p.strip()]
    if not ids:
        raise click.BadParameter("name at least one project id", param_hint="--projects")
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
                from chalicelib.rollups import compact_all

                written = to_table(events, writer, batch_size=batch_size, progress=progress)
                compact_all(_rollup_client(), settle_s=0)  # nothing else writes: the rollups can catch up now
                return written
        else:
            sender = _pipeline_sender(settings)

            def sink(progress: Any) -> int:
                try:
                    return to_pipeline(events, sender, settings.events_topic, batch_size=batch_size, progress=progress)
                finally:
                    sender.close()

        started = _time.monotonic()
        with click.progressbar(length=count, label=f"{count:,} events -> {target}", show_pos=True) as bar:
            written = sink(bar.update)
    except TrackflowError as exc:
        raise click.ClickException(exc.message) from None
    elapsed = _time.monotonic() - started
    click.echo(
        f"{written:,} events in {elapsed:.1f} s ({written / elapsed:,.0f}/s) for {', '.join(ids)} (--seed {seed})"
    )


def _pipeline_sender(settings: Settings) -> Any:
    from chalicelib.health import broker_reachable
    from chalicelib.producer import KafkaSender, backend_factory

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
    from trackflow.projects_cli import projects

    main.add_command(projects)


_register()

if __name__ == "__main__":
    main()
