"""The cluster form of the migrations: local Replicated tables, Distributed tables sharded by project."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chalicelib.cluster_ddl import ClusterRenderer

TABLE = """CREATE TABLE IF NOT EXISTS db.events
(
    project_id LowCardinality(String),
    event_id   UUID
)
ENGINE = ReplacingMergeTree
ORDER BY (project_id, event_id)"""


def test_a_table_becomes_a_replicated_local_table_and_a_distributed_one_sharded_by_project() -> None:
    local, distributed = ClusterRenderer("tf", "db").render(TABLE)
    assert local.startswith("CREATE TABLE IF NOT EXISTS db.events_local ON CLUSTER tf\n(")
    assert "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/db/events_local', '{replica}')" in local
    assert local.endswith("ORDER BY (project_id, event_id)")
    assert distributed == (
        "CREATE TABLE IF NOT EXISTS db.events ON CLUSTER tf AS db.events_local\n"
        "ENGINE = Distributed(tf, db, events_local, cityHash64(project_id))"
    )


def test_engine_arguments_follow_the_replication_ones_and_tables_without_a_project_spread_at_random() -> None:
    statement = "CREATE TABLE IF NOT EXISTS db.letters\n(\n    reason String,\n    v UInt64\n)\nENGINE = ReplacingMergeTree(v)\nORDER BY reason"
    local, distributed = ClusterRenderer("tf", "db").render(statement)
    assert "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/db/letters_local', '{replica}', v)" in local
    assert distributed.endswith("Distributed(tf, db, letters_local, rand())")


def test_materialized_views_read_and_write_the_local_tables() -> None:
    renderer = ClusterRenderer("tf", "db")
    renderer.render(TABLE)
    renderer.render(TABLE.replace("db.events", "db.rollup"))
    [view] = renderer.render(
        "CREATE MATERIALIZED VIEW IF NOT EXISTS db.rollup_mv TO db.rollup AS SELECT * FROM db.events"
    )
    assert (
        view
        == "CREATE MATERIALIZED VIEW IF NOT EXISTS db.rollup_mv ON CLUSTER tf TO db.rollup_local AS SELECT * FROM db.events_local"
    )


def test_alters_reach_both_tables_but_settings_only_the_local_one() -> None:
    renderer = ClusterRenderer("tf", "db")
    renderer.render(TABLE)
    assert renderer.render("ALTER TABLE db.events ADD COLUMN IF NOT EXISTS x String") == [
        "ALTER TABLE db.events_local ON CLUSTER tf ADD COLUMN IF NOT EXISTS x String",
        "ALTER TABLE db.events ON CLUSTER tf ADD COLUMN IF NOT EXISTS x String",
    ]
    assert renderer.render("ALTER TABLE db.events MODIFY SETTING a = 0") == [
        "ALTER TABLE db.events_local ON CLUSTER tf MODIFY SETTING a = 0"
    ]


def test_views_and_drops_go_on_cluster_and_backfills_run_once_through_the_distributed_table() -> None:
    renderer = ClusterRenderer("tf", "db")
    assert renderer.render("CREATE OR REPLACE VIEW db.v AS SELECT 1") == [
        "CREATE OR REPLACE VIEW db.v ON CLUSTER tf AS SELECT 1"
    ]
    assert renderer.render("DROP TABLE IF EXISTS db.t") == [
        "DROP TABLE IF EXISTS db.t ON CLUSTER tf",
        "DROP TABLE IF EXISTS db.t_local ON CLUSTER tf",
    ]
    insert = "INSERT INTO db.rollup SELECT * FROM db.events FINAL"
    assert renderer.render(insert) == [insert]


def test_a_statement_without_a_cluster_form_or_a_bad_cluster_name_is_refused() -> None:
    with pytest.raises(ValueError, match="no cluster form"):
        ClusterRenderer("tf", "db").render("OPTIMIZE TABLE db.events FINAL")
    with pytest.raises(ValueError, match="plain identifier"):
        ClusterRenderer("tf; DROP", "db")


def test_the_hourly_rollups_render_as_replicated_replacing_tables_sharded_by_project() -> None:
    from chalicelib.storage.migrations import load_migrations
    from trackflow.dev import MIGRATIONS_DIR

    renderer = ClusterRenderer("analytics", "tf")
    rendered = [
        renderer.render_all(m.statements) for m in load_migrations(MIGRATIONS_DIR, database="tf") if m.version <= 8
    ][-1]
    session_hours = next(
        s for s in rendered if s.startswith("CREATE TABLE IF NOT EXISTS tf.rollup_session_hours_local")
    )
    assert (
        "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/tf/rollup_session_hours_local', "
        "'{replica}', gen)" in session_hours
    )
    assert (
        "CREATE TABLE IF NOT EXISTS tf.rollup_hour_gens ON CLUSTER analytics AS tf.rollup_hour_gens_local\n"
        "ENGINE = Distributed(analytics, tf, rollup_hour_gens_local, cityHash64(project_id))"
    ) in rendered
    # No statement of the upgrade mutates rows; the old tables go on every node, local and Distributed.
    assert not any(s.startswith(("DELETE", "ALTER")) for s in rendered)
    assert "DROP TABLE IF EXISTS tf.rollup_changes_local ON CLUSTER analytics" in rendered


def test_on_a_cluster_every_client_inserts_in_the_foreground_and_reads_only_replicas_within_the_lag(
    tmp_path: Path,
) -> None:
    from chalicelib.errors import ConfigError
    from chalicelib.settings import load_settings
    from chalicelib.storage.clickhouse import cluster_settings

    env = {"TRACKFLOW_DATA_DIR": str(tmp_path), "CLICKHOUSE_URL": "https://ch-1.example:8443"}
    single = load_settings(env)
    assert single.clickhouse.replica_lag_s == 0 and cluster_settings(single.clickhouse) == {}
    cluster = load_settings(env | {"CLICKHOUSE_CLUSTER": "analytics"})
    assert cluster.clickhouse.replica_lag_s == 30
    assert cluster_settings(cluster.clickhouse) == {
        "insert_distributed_sync": "1",
        "max_replica_delay_for_distributed_queries": "30",
        "fallback_to_stale_replicas_for_distributed_queries": "0",
    }
    with pytest.raises(ConfigError, match="must exceed CLICKHOUSE_REPLICA_LAG"):
        load_settings(env | {"CLICKHOUSE_CLUSTER": "analytics", "TRACKFLOW_ROLLUP_SETTLE": "20"})


class _Recorder:
    """A client that answers every count with 1 (so every delete happens) and records the statements."""

    def __init__(self) -> None:
        self.commands: list[str] = []

    def query(self, sql: str, parameters: Any = None, **_: Any) -> Any:
        from datetime import UTC, datetime

        if "DISTINCT anonymous_id" in sql:
            rows: list[tuple[Any, ...]] = [("browser-1",)]
        elif "DISTINCT toStartOfHour" in sql:
            rows = [(datetime(2026, 11, 1, 9, tzinfo=UTC),)]
        elif "undone" in sql or "lease_until" in sql:
            rows = [(0,)]
        else:
            rows = [(1,)]
        return type("Result", (), {"result_rows": rows})()

    def command(self, sql: str, **_: Any) -> None:
        self.commands.append(sql)

    def insert(self, *args: Any, **kwargs: Any) -> None:
        pass


def test_on_a_cluster_retention_and_erasure_delete_from_every_nodes_local_tables() -> None:
    from datetime import UTC, datetime

    from chalicelib.ownership.people import Person, erase
    from chalicelib.rollups.compaction import ROLLUP_TABLES, rebuild
    from chalicelib.storage.retention import TABLE_DAYS, expire

    client = _Recorder()
    expire(client, [], default_days=30, now=datetime(2026, 11, 10, tzinfo=UTC), cluster="tf")
    assert [c.split(" DELETE")[0] for c in client.commands] == [
        f"ALTER TABLE {table}_local ON CLUSTER tf" for table in TABLE_DAYS
    ]
    client = _Recorder()
    erase(
        client,
        "shop",
        Person("user_id", "u-1"),
        actor="t",
        now=datetime(2026, 11, 10, tzinfo=UTC),
        rebuild=rebuild,
        cluster="tf",
    )
    assert [c.split(" DELETE")[0] for c in client.commands] == [
        "ALTER TABLE events_local ON CLUSTER tf",
        *(f"ALTER TABLE {table}_local ON CLUSTER tf" for table in ROLLUP_TABLES),
        "ALTER TABLE dead_letters_local ON CLUSTER tf",
    ]
    client = _Recorder()
    expire(client, [], default_days=30, now=datetime(2026, 11, 10, tzinfo=UTC))
    assert client.commands[0].startswith("ALTER TABLE events DELETE WHERE")  # one server: the table itself


def test_a_table_rebuilt_with_another_key_renames_its_local_tables_and_is_copied_shard_by_shard() -> None:
    renderer = ClusterRenderer("tf", "db")
    renderer.render(TABLE)
    new, distributed = renderer.render(
        "CREATE TABLE IF NOT EXISTS db.events_v2 AS db.events ENGINE = ReplacingMergeTree ORDER BY (project_id, x)"
    )
    assert new.startswith("CREATE TABLE IF NOT EXISTS db.events_v2_local ON CLUSTER tf AS db.events_local ENGINE = ")
    assert distributed.endswith("cityHash64(project_id))")  # the key of the table it copies
    assert renderer.render("ALTER TABLE db.events_v2 ADD INDEX i x TYPE minmax GRANULARITY 1") == [
        "ALTER TABLE db.events_v2_local ON CLUSTER tf ADD INDEX i x TYPE minmax GRANULARITY 1"
    ]
    assert renderer.render("RENAME TABLE db.events TO db.events_v1, db.events_v2 TO db.events") == [
        "RENAME TABLE db.events_local TO db.events_v1_local, db.events_v2_local TO db.events_local ON CLUSTER tf"
    ]
    # The Distributed db.events now reaches the new local tables; the old ones are read on every shard.
    assert renderer.render("INSERT INTO db.events SELECT * FROM db.events_v1") == [
        "INSERT INTO db.events SELECT * FROM cluster('tf', 'db', 'events_v1_local')"
    ]
    with pytest.raises(ValueError, match="only tables created here"):
        renderer.render("RENAME TABLE db.elsewhere TO db.other")


def test_a_table_rebuilt_twice_copies_from_the_kept_local_tables_even_under_a_name_used_before() -> None:
    # 010 created db.events_by_hour and renamed it to db.events; 013 renames db.events away to that name.
    renderer = ClusterRenderer("tf", "db")
    renderer.render(TABLE)
    for old, new in (("events_v1", "events_v2"), ("events_v2", "events_v3")):
        renderer.render(
            f"CREATE TABLE IF NOT EXISTS db.{new} AS db.events ENGINE = ReplacingMergeTree ORDER BY (project_id)"
        )
        renderer.render(f"RENAME TABLE db.events TO db.{old}, db.{new} TO db.events")
        assert renderer.render(f"INSERT INTO db.events SELECT * FROM db.{old}") == [
            f"INSERT INTO db.events SELECT * FROM cluster('tf', 'db', '{old}_local')"
        ]
        for name in (new, old):
            renderer.render(f"DROP TABLE IF EXISTS db.{name}")
    renderer.render(
        "CREATE TABLE IF NOT EXISTS db.events_v4 AS db.events ENGINE = ReplacingMergeTree ORDER BY (project_id)"
    )
    renderer.render("RENAME TABLE db.events TO db.events_v2, db.events_v4 TO db.events")  # a name dropped before
    assert renderer.render("INSERT INTO db.events SELECT * FROM db.events_v2") == [
        "INSERT INTO db.events SELECT * FROM cluster('tf', 'db', 'events_v2_local')"
    ]
