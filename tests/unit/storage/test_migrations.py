"""Migration files: naming, ordering, statement splitting and ${DATABASE} substitution."""

from __future__ import annotations

from pathlib import Path

import pytest

from chalicelib.errors import ConfigError
from chalicelib.storage.migrations import load_migrations
from trackflow.dev import MIGRATIONS_DIR

# Migrations that rebuild the events table under a new sorting key.
REBUILDS = {10: "010_events_by_hour.sql", 13: "013_events_by_minute.sql"}


def test_project_migrations_load_in_order_with_the_database_filled_in() -> None:
    migrations = load_migrations(MIGRATIONS_DIR, database="tf")
    assert [m.version for m in migrations] == sorted(m.version for m in migrations)
    assert migrations[0].name == "001_events"
    statements = [s for m in migrations for s in m.statements]
    assert all("${DATABASE}" not in s for s in statements)
    assert any(s.startswith("CREATE TABLE IF NOT EXISTS tf.events") for s in statements)
    # Safe to re-run: created only if missing, dropped only if there, views replaced,
    # settings set, backfills only take events stored before their materialized
    # view existed, and marking days or hours for rollup compaction again only recompacts them.
    assert all(
        "IF NOT EXISTS" in s
        or "IF EXISTS" in s
        or s.startswith("CREATE OR REPLACE VIEW")
        or (s.startswith("ALTER TABLE") and "MODIFY SETTING" in s)
        or (s.startswith("INSERT INTO") and "metadata_modification_time" in s)
        or s.startswith("INSERT INTO tf.rollup_changes")
        or s.startswith("INSERT INTO tf.rollup_hour_changes")
        for s in statements
        if not any(m.version in REBUILDS and s in m.statements for m in migrations)
    ), [s for s in statements if "IF" not in s][:3]
    # The exceptions: 010 and 013 rebuild the events table under a new sorting key with a RENAME, which a
    # re-run would refuse (the old table's new name is taken); their headers say what to run by hand.
    for version, name in REBUILDS.items():
        rebuild = next(m for m in migrations if m.version == version).statements
        assert [s.split()[0] for s in rebuild if "IF" not in s] == ["RENAME", "INSERT", "INSERT"]
        header = (MIGRATIONS_DIR / name).read_text()
        assert "run the last four\n-- statements by hand" in header, name


def test_splits_statements_and_drops_comment_lines(tmp_path: Path) -> None:
    (tmp_path / "001_two.sql").write_text(
        "-- a; comment;\nCREATE TABLE ${DATABASE}.a (x UInt8) ENGINE=Log;\n\nSELECT ';'\n;\n"
    )
    (migration,) = load_migrations(tmp_path, database="d")
    assert migration.statements == ("CREATE TABLE d.a (x UInt8) ENGINE=Log", "SELECT ';'")


@pytest.mark.parametrize("name", ["1_x.sql", "001-x.sql", "abc.sql"])
def test_rejects_badly_named_files(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_text("SELECT 1")
    with pytest.raises(ConfigError):
        load_migrations(tmp_path, database="d")


def test_rejects_a_database_name_that_is_not_an_identifier() -> None:
    with pytest.raises(ConfigError):
        load_migrations(MIGRATIONS_DIR, database="x; DROP TABLE y")
