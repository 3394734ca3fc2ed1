"""chalicelib.storage.clickhouse on the embedded engine: read-only clients and the writer side by side."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.settings import Settings
from chalicelib.storage.clickhouse import connect

pytestmark = pytest.mark.integration


def test_a_read_only_client_refuses_writes_and_leaves_the_writer_able_to_write(
    settings: Settings, clickhouse: Any
) -> None:
    database = settings.clickhouse.database
    reader = connect(settings.clickhouse, database=database, read_only=True)
    assert reader.query("SELECT count() FROM events").result_rows == [(0,)]
    for statement in ("DROP TABLE events", "INSERT INTO events (project_id) VALUES ('x')", "SET readonly = 0"):
        with pytest.raises(Exception, match=r"(?i)readonly"):
            reader.command(statement)
    # chDB keeps settings per client session: the shared writer session is untouched.
    writer = connect(settings.clickhouse, database=database)
    writer.command("INSERT INTO events (project_id, event_id) VALUES ('p', generateUUIDv4())")
    assert reader.query("SELECT count() FROM events").result_rows == [(1,)]
