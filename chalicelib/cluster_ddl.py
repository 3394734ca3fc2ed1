"""The migrations for a ClickHouse cluster: ``ON CLUSTER``, Replicated engines, local/Distributed pairs.

The migration files are written for one server. For a cluster each table
becomes a pair:

- ``<name>_local``: the data, on every node, with the Replicated form of its
  engine (``ReplacingMergeTree`` -> ``ReplicatedReplacingMergeTree``) keyed by
  the ``{shard}`` and ``{replica}`` macros of the node's configuration;
- ``<name>``: a ``Distributed`` table over them, **sharded by project**
  (``cityHash64(project_id)``), so all of a project's events, and so each of
  its sessions and its rollup rows, live on one shard. That is what keeps
  ``FINAL`` (which collapses duplicates within a shard) and the session
  rollups exact. Tables without a project (dead letters) spread at random.

Everything else keeps its name, so the app's queries and inserts go through
the Distributed tables unchanged. Views get ``ON CLUSTER``; materialized
views read and write the local tables (they fire on the shard the insert
lands on); ``ALTER ... MODIFY SETTING`` only concerns the local tables;
``INSERT ... SELECT`` backfills run once, through the Distributed tables.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_SHAPE = re.compile(
    r"^(?P<verb>CREATE\s+TABLE\s+IF\s+NOT\s+EXISTS|CREATE\s+(?:OR\s+REPLACE\s+)?VIEW(?:\s+IF\s+NOT\s+EXISTS)?"
    r"|CREATE\s+MATERIALIZED\s+VIEW\s+IF\s+NOT\s+EXISTS|ALTER\s+TABLE|DROP\s+(?:VIEW|TABLE)\s+IF\s+EXISTS"
    r"|INSERT\s+INTO)\s+(?P<name>[\w.]+)(?P<rest>.*)$",
    re.IGNORECASE | re.DOTALL,
)
_ENGINE = re.compile(r"\bENGINE\s*=\s*(?P<engine>\w+)(?:\((?P<args>[^)]*)\))?", re.IGNORECASE)


def alter(table: str, cluster: str | None) -> str:
    """``ALTER TABLE`` of a table's rows (a ``DELETE``): on a cluster its local tables on every node,
    since the Distributed table holds none. It waits for every replica, so a node that is down stalls it."""
    return f"ALTER TABLE {table}_local ON CLUSTER {cluster}" if cluster else f"ALTER TABLE {table}"


def replicated_engine(engine: str, args: str | None, *, database: str, table: str) -> str:
    """``ReplacingMergeTree(ver)`` -> ``ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/db/t', '{replica}', ver)``."""
    path = f"'/clickhouse/tables/{{shard}}/{database}/{table}', '{{replica}}'"
    extra = f", {args.strip()}" if args and args.strip() else ""
    return f"ENGINE = Replicated{engine}({path}{extra})"


class ClusterRenderer:
    """Turns single-server statements into cluster statements, remembering which names are tables."""

    def __init__(self, cluster: str, database: str) -> None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", cluster):
            raise ValueError(f"cluster name {cluster!r} must be a plain identifier")
        self.cluster = cluster
        self.database = database
        self.tables: set[str] = set()

    def _on(self, name: str) -> str:
        return f"{name} ON CLUSTER {self.cluster}"

    def _local(self, name: str) -> str:
        return f"{name}_local"

    def _locals_in(self, sql: str) -> str:
        """Every table created so far that ``sql`` names -> its local table."""
        for table in sorted(self.tables, key=len, reverse=True):
            sql = re.sub(rf"\b{re.escape(table)}\b(?!_)", self._local(table), sql)
        return sql

    def render(self, statement: str) -> list[str]:
        match = _SHAPE.match(statement.strip())
        if match is None:
            raise ValueError(f"no cluster form for: {statement[:80]}")
        verb = " ".join(match.group("verb").upper().split())
        name, rest = match.group("name"), match.group("rest")
        if verb == "CREATE TABLE IF NOT EXISTS":
            return self._table(name, rest)
        if verb == "CREATE MATERIALIZED VIEW IF NOT EXISTS":
            return [f"{verb} {self._on(name)}{self._locals_in(rest)}"]
        if verb.startswith("CREATE") or verb == "DROP VIEW IF EXISTS":
            return [f"{verb} {self._on(name)}{rest}"]
        if verb == "ALTER TABLE":
            local = f"{verb} {self._on(self._local(name))}{rest}"
            if re.match(r"\s*MODIFY\s+SETTING", rest, re.IGNORECASE):
                return [local]
            return [local, f"{verb} {self._on(name)}{rest}"]
        if verb == "DROP TABLE IF EXISTS":
            return [f"{verb} {self._on(name)}{rest}", f"{verb} {self._on(self._local(name))}{rest}"]
        return [statement.strip()]  # INSERT ... SELECT: once, through the Distributed tables

    def _table(self, name: str, rest: str) -> list[str]:
        engine = _ENGINE.search(rest)
        if engine is None:
            raise ValueError(f"CREATE TABLE {name} has no ENGINE clause")
        table = name.split(".")[-1]
        replicated = replicated_engine(
            engine.group("engine"), engine.group("args"), database=self.database, table=f"{table}_local"
        )
        local_rest = rest[: engine.start()] + replicated + rest[engine.end() :]
        key = "cityHash64(project_id)" if re.search(r"^\s*project_id\s", rest, re.MULTILINE) else "rand()"
        self.tables.add(name)
        return [
            f"CREATE TABLE IF NOT EXISTS {self._on(self._local(name))}{local_rest}",
            f"CREATE TABLE IF NOT EXISTS {self._on(name)} AS {self._local(name)}\n"
            f"ENGINE = Distributed({self.cluster}, {self.database}, {table}_local, {key})",
        ]

    def render_all(self, statements: Iterable[str]) -> list[str]:
        return [rendered for statement in statements for rendered in self.render(statement)]
