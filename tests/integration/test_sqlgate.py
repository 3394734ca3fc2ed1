"""The dev SQL gate: only reads of TrackFlow's tables, only from the CLI that holds the secret."""

from __future__ import annotations

import json
import os
import stat
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from chalicelib.settings import Settings
from chalicelib.storage.clickhouse import connect
from trackflow.sqlgate import STATE_FILE, QueryRefusedError, SqlGate, query_running_dev, run_query

pytestmark = pytest.mark.integration


@pytest.fixture
def reader(settings: Settings, clickhouse: Any) -> Any:
    return connect(settings.clickhouse, database=settings.clickhouse.database, read_only=True)


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("SELECT * FROM file('/etc/hostname', 'LineAsString')", "file()"),
        ("SELECT file('/etc/hostname')", "file()"),
        ("SELECT * FROM (SELECT * FROM file('/etc/passwd', 'LineAsString'))", "file()"),
        ("SELECT * FROM url('http://127.0.0.1:9/', 'CSV', 'a String')", "url()"),
        ("SELECT * FROM s3('http://127.0.0.1:9/b/k.csv', 'CSV', 'a String')", "s3()"),
        ("SELECT * FROM remote('127.0.0.1', system.one)", "remote()"),
        ("SELECT * FROM executable('id', 'TSV', 'a String')", "executable()"),
        ("SELECT count() FROM events SETTINGS max_execution_time = 0", "SETTINGS"),
        ("SELECT 1 INTO OUTFILE '/tmp/trackflow-gate-test.txt'", "INTO OUTFILE"),
        ("DROP TABLE events", "only SELECT"),
        ("INSERT INTO events (project_id) VALUES ('x')", "only SELECT"),
    ],
)
def test_reading_outside_trackflows_tables_is_refused(reader: Any, sql: str, why: str) -> None:
    with pytest.raises(QueryRefusedError, match=why.replace("(", r"\(").replace(")", r"\)")):
        run_query(reader, sql)


def test_reads_of_the_tables_views_and_generators_run(reader: Any) -> None:
    assert run_query(reader, "SELECT count() AS n FROM events FINAL")["rows"] == [[0]]
    assert run_query(reader, "SELECT count() FROM sessions")["rows"] == [[0]]
    assert run_query(reader, "SELECT sum(number) FROM numbers(4)")["rows"] == [[6]]
    assert ["events"] in run_query(reader, "SHOW TABLES")["rows"]


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_gate_answers_only_the_secret_holder_and_never_a_web_page(reader: Any, tmp_path: Path) -> None:
    gate = SqlGate(reader, data_dir=tmp_path).start()
    try:
        state_file = tmp_path / STATE_FILE
        assert stat.S_IMODE(os.stat(state_file).st_mode) == 0o600
        secret = json.loads(state_file.read_text())["secret"]
        query = b"SELECT 1 AS one"
        assert _post(gate.url, query, {})[0] == 401
        assert _post(gate.url, query, {"Authorization": "Bearer wrong"})[0] == 401
        with_origin = {"Authorization": f"Bearer {secret}", "Origin": "http://evil.example"}
        assert _post(gate.url, query, with_origin)[0] == 403
        status, body = _post(
            gate.url, b"SELECT * FROM file('/etc/hostname','LineAsString')", with_origin | {"Origin": ""}
        )
        assert status == 403  # an Origin header of any value
        status, body = _post(
            gate.url, b"SELECT * FROM file('/etc/hostname','LineAsString')", {"Authorization": f"Bearer {secret}"}
        )
        assert status == 403 and "file()" in body["error"]
        assert query_running_dev(tmp_path, "SELECT 1 AS one") == {"columns": ["one"], "rows": [[1]]}
    finally:
        gate.stop()
    assert not (tmp_path / STATE_FILE).exists()
