"""``trackflow`` commands for Kafka: the brokers (embedded, Apache Kafka, a cluster), the topics, replay."""

from __future__ import annotations

import time
from typing import Any

import click

from chalicelib.errors import TrackflowError
from trackflow.cli_common import current_settings, mapping_policy, wait_for_signal


@click.command()
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

    settings = current_settings()
    runtime.configure(settings=settings)
    if to_topic:
        sender = runtime.sender()

        def ingest(payload: dict[str, Any]) -> dict[str, int]:
            from chalicelib.kafka.records import decode_records

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
                payload,
                writer=writer,
                dlq=runtime.sender(),
                dlq_topic=settings.dlq_topic,
                now_ms=runtime.now_ms,
                erased=runtime.erased_ids(),
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
            source = topic or failure_topic(mapping_policy()) or "trackflow.events.failed"
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


@click.group()
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
    from trackflow.topics import describe_created, ensure_topics, topic_plan

    settings = current_settings()
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
        states = describe_created(settings.bootstrap_servers, list(wanted), security=settings.kafka_security)
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None
    for name in wanted:
        state = states.get(name)
        detail = "?" if state is None else state.describe()
        click.echo(f"{name}: {'created' if name in created else 'exists'}, {detail}")


@click.command()
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
        wait_for_signal()
    finally:
        running.stop()


@click.command()
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

    settings = current_settings()
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
            wait_for_signal()
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
        wait_for_signal()
    finally:
        click.echo("stopping Apache Kafka (it flushes its log first)...")
        running.stop()
