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
lands on); ``ALTER ... MODIFY SETTING`` and ``ADD INDEX`` only concern the local tables;
``INSERT ... SELECT`` backfills run once, through the Distributed tables.

A table rebuilt with another sorting key (``RENAME TABLE old TO kept, new TO old``
after creating ``new``) renames the local tables on every node: the Distributed
table keeps its name and now reaches the new local one. The kept local tables
have no Distributed table of their own, so an ``INSERT ... SELECT`` from them
reads them through the ``cluster()`` table function (one replica of each shard).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_SHAPE = re.compile(
    r"^(?P<verb>CREATE\s+TABLE\s+IF\s+NOT\s+EXISTS|CREATE\s+(?:OR\s+REPLACE\s+)?VIEW(?:\s+IF\s+NOT\s+EXISTS)?"
    r"|CREATE\s+MATERIALIZED\s+VIEW\s+IF\s+NOT\s+EXISTS|ALTER\s+TABLE|DROP\s+(?:VIEW|TABLE)\s+IF\s+EXISTS"
    r"|INSERT\s+INTO|RENAME\s+TABLE)\s+(?P<name>[\w.]+)(?P<rest>.*)$",
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
        self.keys: dict[str, str] = {}  # each table's sharding key
        self.local_only: set[str] = set()  # renamed away: only their local tables exist

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
            if re.match(r"\s*(MODIFY\s+SETTING|ADD\s+INDEX)", rest, re.IGNORECASE):
                return [local]
            return [local, f"{verb} {self._on(name)}{rest}"]
        if verb == "DROP TABLE IF EXISTS":  # the name may be taken again, by a table renamed away
            self.tables.discard(name)
            self.local_only.discard(name)
            return [f"{verb} {self._on(name)}{rest}", f"{verb} {self._on(self._local(name))}{rest}"]
        if verb == "RENAME TABLE":
            return [self._rename(f"{name}{rest}")]
        return [self._from_kept(statement.strip())]  # INSERT ... SELECT: once, through the Distributed tables

    def _rename(self, pairs: str) -> str:
        """``a TO b, c TO d`` -> the same renames of the local tables, on every node."""
        renames, kept = [], []
        for pair in pairs.split(","):
            old, to, new = pair.split()
            if to.upper() != "TO" or old not in self.tables:
                raise ValueError(f"no cluster form for renaming {pair.strip()!r}: only tables created here")
            renames.append(f"{self._local(old)} TO {self._local(new)}")
            if new not in self.tables:  # no Distributed table of that name
                kept.append(new)
        self.local_only.update(kept)
        return f"RENAME TABLE {', '.join(renames)} ON CLUSTER {self.cluster}"

    def _from_kept(self, sql: str) -> str:
        """A table renamed away is read on every shard through ``cluster()``."""
        for name in self.local_only:
            database, _, table = name.rpartition(".")
            source = f"cluster('{self.cluster}', '{database or self.database}', '{self._local(table)}')"
            sql = re.sub(rf"\b{re.escape(name)}\b(?!_)", source, sql)
        return sql

    def _table(self, name: str, rest: str) -> list[str]:
        engine = _ENGINE.search(rest)
        if engine is None:
            raise ValueError(f"CREATE TABLE {name} has no ENGINE clause")
        table = name.split(".")[-1]
        replicated = replicated_engine(
            engine.group("engine"), engine.group("args"), database=self.database, table=f"{table}_local"
        )
        local_rest = self._locals_in(rest[: engine.start()]) + replicated + rest[engine.end() :]
        like = re.match(r"\s*AS\s+([\w.]+)", rest, re.IGNORECASE)  # CREATE TABLE new AS old: old's columns
        if like:
            key = self.keys[like.group(1)]
        else:
            key = "cityHash64(project_id)" if re.search(r"^\s*project_id\s", rest, re.MULTILINE) else "rand()"
        self.tables.add(name)
        self.keys[name] = key
        return [
            f"CREATE TABLE IF NOT EXISTS {self._on(self._local(name))}{local_rest}",
            f"CREATE TABLE IF NOT EXISTS {self._on(name)} AS {self._local(name)}\n"
            f"ENGINE = Distributed({self.cluster}, {self.database}, {table}_local, {key})",
        ]

    def render_all(self, statements: Iterable[str]) -> list[str]:
        return [rendered for statement in statements for rendered in self.render(statement)]
