"""Every migration in its cluster form parses in ClickHouse's own parser (EXPLAIN AST, embedded engine).

No cluster runs here (it needs ZooKeeper/Keeper and several servers), so what
is proven is that each statement `trackflow migrate --cluster` would send is
valid ClickHouse SQL and has the shape docs/scaling.md describes; the
single-server form is applied by every other test.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from click.testing import CliRunner

from chalicelib.storage.migrations import bookkeeping, cluster_statements, load_migrations
from trackflow.cli import main
from trackflow.dev import MIGRATIONS_DIR

pytestmark = pytest.mark.integration


@pytest.fixture
def statements() -> list[str]:
    migrations = load_migrations(MIGRATIONS_DIR, database="trackflow")
    rendered = cluster_statements(migrations, cluster="analytics", database="trackflow")
    return bookkeeping("trackflow", "analytics") + [s for _, group in rendered for s in group]


def test_every_cluster_statement_parses(clickhouse: Any, statements: list[str]) -> None:
    for statement in statements:
        clickhouse.query(f"EXPLAIN AST {statement}")
    with pytest.raises(Exception, match="Syntax error"):  # the parser does refuse what is not SQL
        clickhouse.query("EXPLAIN AST CREATE TABLE t ON CLUSTER (x UInt8) ENGINE = Replicated")


def test_every_table_is_a_replicated_local_and_distributed_pair_sharded_by_project(statements: list[str]) -> None:
    ddl = [s for s in statements if s.startswith("CREATE TABLE")]
    locals_ = {re.match(r"CREATE TABLE IF NOT EXISTS (\S+)_local ", s).group(1) for s in ddl if "_local ON" in s}  # type: ignore[union-attr]
    distributed = {s.split()[5] for s in ddl if "ENGINE = Distributed" in s}
    assert locals_ == distributed
    assert {"trackflow.events", "trackflow.rollup_session_days", "trackflow.rollup_hour_gens"} <= distributed
    for statement in ddl:
        if "_local ON" in statement:
            assert "ENGINE = Replicated" in statement
    for statement in ddl:
        if "ENGINE = Distributed" in statement and "dead_letters" not in statement:
            assert statement.endswith("cityHash64(project_id))")
    for statement in statements:
        if not statement.startswith("INSERT"):
            assert " ON CLUSTER analytics" in statement, statement[:80]


def test_migrate_print_shows_the_cluster_form(tmp_path: Any) -> None:
    result = CliRunner().invoke(
        main, ["migrate", "--cluster", "analytics", "--print"], env={"TRACKFLOW_DATA_DIR": str(tmp_path)}
    )
    assert result.exit_code == 0, result.output
    assert "CREATE TABLE IF NOT EXISTS trackflow.events_local ON CLUSTER analytics" in result.output
    assert "ENGINE = Distributed(analytics, trackflow, events_local, cityHash64(project_id))" in result.output
