"""ClickHouse migrations: numbered plain ``.sql`` files applied in order, once.

Files are named ``NNN_description.sql`` and live in ``infra/clickhouse/migrations``
(the directory is passed in). Each holds one or more statements separated by a
``;`` at the end of a line. The only templating is ``${DATABASE}``; for a
cluster, ``chalicelib.cluster_ddl`` rewrites each statement (``ON CLUSTER``,
Replicated engines, local/Distributed pairs sharded by project). Applied
versions are recorded in ``<database>.schema_migrations``; every statement is
written with ``IF NOT EXISTS`` (or ``CREATE OR REPLACE``) as well, so a
half-applied file can be re-run. The exception is a rollup backfill
(``INSERT ... SELECT`` of the events stored before its view existed): re-running
a file that failed after a backfill ran would add those events to that rollup
again (truncate the rollup table and re-run its backfill to mend it).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chalicelib.errors import ConfigError

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")
_DATABASE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def _split(sql: str) -> tuple[str, ...]:
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    parts = re.split(r";\s*$", "\n".join(lines), flags=re.MULTILINE)
    return tuple(part.strip() for part in parts if part.strip())


def load_migrations(directory: Path, *, database: str) -> list[Migration]:
    """The migrations in ``directory``, sorted by version, with ``${DATABASE}`` filled in."""
    if not _DATABASE.match(database):
        raise ConfigError(f"CLICKHOUSE_DATABASE={database!r} must be a plain identifier (letters, digits, _)")
    found: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if match is None:
            raise ConfigError(f"migration file {path.name!r} must be named NNN_description.sql")
        sql = path.read_text(encoding="utf-8").replace("${DATABASE}", database)
        found.append(Migration(int(match.group(1)), path.stem, _split(sql)))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ConfigError(f"two migration files in {directory} share a version number")
    return found


def cluster_statements(
    migrations: list[Migration], *, cluster: str, database: str
) -> list[tuple[Migration, list[str]]]:
    """Each migration's statements in their cluster form (every file is read, so later ALTERs know the tables)."""
    from chalicelib.cluster_ddl import ClusterRenderer

    renderer = ClusterRenderer(cluster, database)
    return [(migration, renderer.render_all(migration.statements)) for migration in migrations]


def planned_statements(
    directory: Path, *, database: str, cluster: str | None = None
) -> list[tuple[Migration, list[str]]]:
    """Every migration with the statements to run: as written, or their cluster form."""
    migrations = load_migrations(directory, database=database)
    if cluster is None:
        return [(migration, list(migration.statements)) for migration in migrations]
    return cluster_statements(migrations, cluster=cluster, database=database)


def bookkeeping(database: str, cluster: str | None = None) -> list[str]:
    """The statements that create the database and the table of applied versions."""
    if cluster is None:
        on, engine = "", "ReplacingMergeTree"
    else:  # one replicated table across every node: each sees which versions ran
        on = f" ON CLUSTER {cluster}"
        engine = f"ReplicatedReplacingMergeTree('/clickhouse/tables/all/{database}/schema_migrations', '{{replica}}')"
    return [
        f"CREATE DATABASE IF NOT EXISTS {database}{on}",
        f"CREATE TABLE IF NOT EXISTS {database}.schema_migrations{on} "
        f"(version UInt32, name String, applied_at DateTime DEFAULT now()) ENGINE = {engine} ORDER BY version",
    ]


def migrate(client: Any, directory: Path, *, database: str, cluster: str | None = None) -> list[str]:
    """Apply every migration not yet recorded (``ON CLUSTER`` when ``cluster``); return the names applied now."""
    planned = planned_statements(directory, database=database, cluster=cluster)
    for statement in bookkeeping(database, cluster):
        client.command(statement)
    done = {row[0] for row in client.query(f"SELECT version FROM {database}.schema_migrations FINAL").result_rows}
    applied: list[str] = []
    for migration, statements in planned:
        if migration.version in done:
            continue
        logger.info("applying migration %s", migration.name)
        for statement in statements:
            client.command(statement)
        client.insert(
            f"{database}.schema_migrations", [[migration.version, migration.name]], column_names=["version", "name"]
        )
        applied.append(migration.name)
    return applied
