"""Settings: read once from the environment into a frozen object.

Every knob TrackFlow has is here, with its default as a named constant. Nothing
else in the code reads ``os.environ``. ``load_settings`` raises
:class:`~chalicelib.errors.ConfigError` naming the variable to fix when a value
is malformed, so a bad deployment fails at start, not on the first event.

Embedded defaults: with no ``KAFKA_BOOTSTRAP_SERVERS`` the local tooling starts a
broker on ``127.0.0.1:9092``; with no ClickHouse setting the client is chDB in
``<TRACKFLOW_DATA_DIR>/clickhouse``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from chalicelib.errors import ConfigError
from chalicelib.kafka import security as kafka_security
from chalicelib.kafka.security import KafkaSecurity

DEFAULT_EVENTS_TOPIC = "trackflow.events"
DEFAULT_DLQ_TOPIC = "trackflow.events.dlq"
DEFAULT_DATA_DIR = "./.trackflow"
DEFAULT_EMBEDDED_BOOTSTRAP = "127.0.0.1:9092"
DEFAULT_CLICKHOUSE_DATABASE = "trackflow"
DEFAULT_CLICKHOUSE_PORT = 8123
# A ClickHouse server that does not answer must not hang a request or outlive
# a Lambda: connecting, and each query or insert, are bounded (the library's
# own defaults are 10 s and 300 s).
DEFAULT_CLICKHOUSE_CONNECT_TIMEOUT_S = 3.0
DEFAULT_CLICKHOUSE_QUERY_TIMEOUT_S = 30.0
DEFAULT_STAGE = "dev"
DEFAULT_PRODUCE_TIMEOUT_S = 5.0
DEFAULT_RETRY_AFTER_S = 5
DEFAULT_KAFKA_CLIENT = "confluent"
# Rollup compaction (chalicelib.rollups.compaction): how often the local tooling runs it,
# and how long a day must be quiet before it is compacted (above any insert's duration).
DEFAULT_ROLLUP_INTERVAL_S = 15.0
DEFAULT_ROLLUP_SETTLE_S = 60.0
# Whole UTC days a project keeps (TRACKFLOW_RETENTION_DAYS, chalicelib.storage.retention), and the most it may.
DEFAULT_RETENTION_DAYS = 400
MAX_RETENTION_DAYS = 3650
# On a cluster: how far behind a replica may be and still be read (CLICKHOUSE_REPLICA_LAG); below the settle time.
DEFAULT_CLUSTER_REPLICA_LAG_S = 30.0
# Development only: prod refuses to start without TRACKFLOW_SALT_SECRET(_ARN).
DEV_SALT_SECRET = "trackflow-development-salt"
KAFKA_CLIENTS = ("confluent", "kafka-python")
STAGES = ("dev", "prod", "test")


@dataclass(frozen=True)
class ClickHouseSettings:
    """Where ClickHouse is: an HTTP server, or chDB embedded in ``data_path``."""

    url: str | None
    host: str | None
    port: int
    user: str
    password: str
    database: str
    secure: bool
    data_path: Path
    connect_timeout_s: float = DEFAULT_CLICKHOUSE_CONNECT_TIMEOUT_S
    query_timeout_s: float = DEFAULT_CLICKHOUSE_QUERY_TIMEOUT_S
    cluster: str | None = None  # CLICKHOUSE_CLUSTER: tables are local/Distributed pairs (trackflow migrate --cluster)
    replica_lag_s: float = 0.0  # CLICKHOUSE_REPLICA_LAG (cluster only): replicas further behind are not read
    password_secret_arn: str | None = None  # CLICKHOUSE_PASSWORD_SECRET_ARN: read at first connect
    aws_region: str | None = None

    def resolved_password(self) -> str:
        """The password: CLICKHOUSE_PASSWORD, or the secret's (fetched once per process)."""
        if self.password_secret_arn is None:
            return self.password
        from chalicelib import secrets

        return secrets.read_password(
            self.password_secret_arn, region=self.aws_region, purpose="the ClickHouse password"
        )

    @property
    def embedded(self) -> bool:
        return self.url is None and self.host is None

    @property
    def location(self) -> str:
        """Where it is, for people: the URL, host:port, or the embedded engine's directory."""
        if self.url:
            return self.url
        return f"{self.host}:{self.port}" if self.host else f"chDB in {self.data_path}"


@dataclass(frozen=True)
class Settings:
    """Everything TrackFlow is configured with. Build it with :func:`load_settings`."""

    stage: str
    data_dir: Path
    kafka_bootstrap_servers: str | None
    kafka_client: str
    events_topic: str
    dlq_topic: str
    produce_timeout_s: float
    retry_after_s: int
    clickhouse: ClickHouseSettings
    projects_table: str | None
    salt_secret: bytes
    salt_secret_arn: str | None = None
    aws_region: str | None = None
    rollup_interval_s: float = DEFAULT_ROLLUP_INTERVAL_S
    rollup_settle_s: float = DEFAULT_ROLLUP_SETTLE_S
    retention_days: int = DEFAULT_RETENTION_DAYS
    kafka_security: KafkaSecurity = field(default_factory=KafkaSecurity)

    def resolved_salt_secret(self) -> bytes:
        """The secret behind visitor-hash salts: TRACKFLOW_SALT_SECRET, or the secret's (fetched once per process)."""
        if self.salt_secret_arn is None:
            return self.salt_secret
        from chalicelib import secrets

        return secrets.read(self.salt_secret_arn, region=self.aws_region, purpose="the hash salt").encode()

    @property
    def projects_path(self) -> Path:
        """The embedded project store (SQLite), used when no DynamoDB table is set."""
        return self.data_dir / "projects.sqlite3"

    @property
    def embedded_kafka(self) -> bool:
        """True when no broker was configured and the local tooling must start one."""
        return self.kafka_bootstrap_servers is None

    @property
    def bootstrap_servers(self) -> str:
        """The brokers to connect to: the configured ones or the embedded default."""
        return self.kafka_bootstrap_servers or DEFAULT_EMBEDDED_BOOTSTRAP


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _seconds(env: Mapping[str, str], name: str, default: float, *, allow_zero: bool = False) -> float:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number; set it to seconds, e.g. {default}") from None
    too_small = value < 0 if allow_zero else value <= 0
    if too_small or not math.isfinite(value):
        raise ConfigError(f"{name}={raw!r} must be {'0 or more' if allow_zero else 'greater than 0'}")
    return value


def _retention_days(env: Mapping[str, str]) -> int:
    raw = _get(env, "TRACKFLOW_RETENTION_DAYS")
    if raw is None:
        return DEFAULT_RETENTION_DAYS
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_RETENTION_DAYS:
        raise ConfigError(
            f"TRACKFLOW_RETENTION_DAYS={raw!r} must be a whole number of days from 1 to {MAX_RETENTION_DAYS} "
            f"(default {DEFAULT_RETENTION_DAYS})"
        )
    return int(raw)


def _bootstrap(env: Mapping[str, str]) -> str | None:
    raw = _get(env, "KAFKA_BOOTSTRAP_SERVERS")
    if raw is None:
        return None
    for server in raw.split(","):
        host, sep, port = server.strip().rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ConfigError(
                f"KAFKA_BOOTSTRAP_SERVERS={raw!r}: {server.strip()!r} is not host:port; "
                "set it like 'broker1:9092,broker2:9092', or unset it to use the embedded broker"
            )
    return raw


def _region(env: Mapping[str, str]) -> str | None:
    """The AWS region as boto3 finds it (AWS_DEFAULT_REGION), or as Lambda also sets it (AWS_REGION)."""
    return _get(env, "AWS_DEFAULT_REGION") or _get(env, "AWS_REGION")


def _clickhouse(env: Mapping[str, str], data_dir: Path) -> ClickHouseSettings:
    url = _get(env, "CLICKHOUSE_URL")
    host = _get(env, "CLICKHOUSE_HOST")
    port_raw = _get(env, "CLICKHOUSE_PORT")
    secure = False
    port = DEFAULT_CLICKHOUSE_PORT
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"CLICKHOUSE_URL={url!r} is not an http(s) URL; set it like http://localhost:8123, "
                "or unset it to use the embedded chDB engine"
            )
        secure = parts.scheme == "https"
    if port_raw is not None:
        if not port_raw.isdigit():
            raise ConfigError(f"CLICKHOUSE_PORT={port_raw!r} is not a port number")
        port = int(port_raw)
    return ClickHouseSettings(
        url=url,
        host=host,
        port=port,
        user=_get(env, "CLICKHOUSE_USER") or "default",
        password=env.get("CLICKHOUSE_PASSWORD", ""),
        database=_get(env, "CLICKHOUSE_DATABASE") or DEFAULT_CLICKHOUSE_DATABASE,
        secure=secure or (_get(env, "CLICKHOUSE_SECURE") or "").lower() in ("1", "true", "yes"),
        data_path=data_dir / "clickhouse",
        connect_timeout_s=_seconds(env, "CLICKHOUSE_CONNECT_TIMEOUT", DEFAULT_CLICKHOUSE_CONNECT_TIMEOUT_S),
        query_timeout_s=_seconds(env, "CLICKHOUSE_QUERY_TIMEOUT", DEFAULT_CLICKHOUSE_QUERY_TIMEOUT_S),
        cluster=_cluster(env),
        replica_lag_s=_seconds(env, "CLICKHOUSE_REPLICA_LAG", DEFAULT_CLUSTER_REPLICA_LAG_S) if _cluster(env) else 0.0,
        password_secret_arn=_get(env, "CLICKHOUSE_PASSWORD_SECRET_ARN"),
        aws_region=_region(env),
    )


def _cluster(env: Mapping[str, str]) -> str | None:
    cluster = _get(env, "CLICKHOUSE_CLUSTER")
    if cluster is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", cluster):
        raise ConfigError(
            f"CLICKHOUSE_CLUSTER={cluster!r} must be a cluster name from remote_servers (letters, digits, _)"
        )
    return cluster


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read the settings from ``env`` (default: the process environment)."""
    env = os.environ if env is None else env
    stage = _get(env, "TRACKFLOW_STAGE") or DEFAULT_STAGE
    if stage not in STAGES:
        raise ConfigError(f"TRACKFLOW_STAGE={stage!r} is unknown; set it to one of {', '.join(STAGES)}")
    data_dir = Path(_get(env, "TRACKFLOW_DATA_DIR") or DEFAULT_DATA_DIR).expanduser().resolve()
    events_topic = _get(env, "TRACKFLOW_EVENTS_TOPIC") or DEFAULT_EVENTS_TOPIC
    dlq_topic = _get(env, "TRACKFLOW_DLQ_TOPIC") or DEFAULT_DLQ_TOPIC
    if events_topic == dlq_topic:
        raise ConfigError("TRACKFLOW_EVENTS_TOPIC and TRACKFLOW_DLQ_TOPIC must differ")
    retry_after = _seconds(env, "TRACKFLOW_RETRY_AFTER", DEFAULT_RETRY_AFTER_S)
    clickhouse = _clickhouse(env, data_dir)
    kafka = _bootstrap(env)
    kafka_client = _get(env, "TRACKFLOW_KAFKA_CLIENT") or DEFAULT_KAFKA_CLIENT
    if kafka_client not in KAFKA_CLIENTS:
        raise ConfigError(
            f"TRACKFLOW_KAFKA_CLIENT={kafka_client!r} is unknown; set it to one of {', '.join(KAFKA_CLIENTS)}"
        )
    if stage == "prod" and (kafka is None or clickhouse.embedded):
        raise ConfigError(
            "the prod stage has no embedded engines: set KAFKA_BOOTSTRAP_SERVERS and CLICKHOUSE_URL "
            "(the stack parameters KafkaBootstrapServers and ClickHouseUrl do this)"
        )
    settle = _seconds(env, "TRACKFLOW_ROLLUP_SETTLE", DEFAULT_ROLLUP_SETTLE_S, allow_zero=True)
    if clickhouse.cluster and settle <= clickhouse.replica_lag_s:
        raise ConfigError(
            f"TRACKFLOW_ROLLUP_SETTLE={settle:g} must exceed CLICKHOUSE_REPLICA_LAG={clickhouse.replica_lag_s:g} "
            "on a cluster: compaction must only read hours every replica it may read already holds"
        )
    salt_secret = _get(env, "TRACKFLOW_SALT_SECRET")
    salt_secret_arn = _get(env, "TRACKFLOW_SALT_SECRET_ARN")
    if stage == "prod" and salt_secret_arn is None and (salt_secret is None or len(salt_secret) < 16):
        raise ConfigError(
            "the prod stage needs TRACKFLOW_SALT_SECRET_ARN (a Secrets Manager secret; the stack makes one) or "
            "TRACKFLOW_SALT_SECRET (16+ random characters) to salt visitor hashes; generate one with: "
            "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return Settings(
        stage=stage,
        data_dir=data_dir,
        kafka_bootstrap_servers=kafka,
        kafka_client=kafka_client,
        events_topic=events_topic,
        dlq_topic=dlq_topic,
        produce_timeout_s=_seconds(env, "TRACKFLOW_PRODUCE_TIMEOUT", DEFAULT_PRODUCE_TIMEOUT_S),
        retry_after_s=max(1, int(retry_after)),
        clickhouse=clickhouse,
        projects_table=_get(env, "TRACKFLOW_PROJECTS_TABLE"),
        salt_secret=(salt_secret or DEV_SALT_SECRET).encode(),
        salt_secret_arn=salt_secret_arn,
        aws_region=_region(env),
        rollup_interval_s=_seconds(env, "TRACKFLOW_ROLLUP_INTERVAL", DEFAULT_ROLLUP_INTERVAL_S),
        rollup_settle_s=settle,
        retention_days=_retention_days(env),
        kafka_security=kafka_security.load(lambda name: _get(env, name), _region(env)),
    )
