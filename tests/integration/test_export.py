"""`trackflow export` on the real engine: every format read back and compared with ``events FINAL``.

The data: generated traffic over three days for two projects, written straight
to the table, with one batch written a second time (as a redelivery leaves
it), so the export must give each event once.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from chalicelib.settings import Settings, load_settings
from tests.conftest import make_env
from trackflow.cli import main
from trackflow.load import Traffic, sites, table_writer, to_table

pytestmark = pytest.mark.integration

END = datetime(2026, 11, 4, tzinfo=UTC)
PROJECTS = ["shop", "blog"]


@pytest.fixture(scope="module")
def stored(data_dir: Path) -> Iterator[tuple[Settings, dict[str, str]]]:
    """Three days of traffic (2026-11-01..03) in a database of the module's own (on the session's engine:
    chDB opens one data directory per process); the environment naming it."""
    from types import SimpleNamespace

    no_broker: Any = SimpleNamespace(bootstrap_servers="127.0.0.1:1")  # nothing here produces
    env = make_env(no_broker, data_dir)
    settings = load_settings(env)
    writer = table_writer(settings)
    events = list(Traffic(sites(PROJECTS), end_ms=int(END.timestamp() * 1000), days=3).events(6_000))
    to_table(iter(events), writer, batch_size=1_000, progress=lambda _: None)
    to_table(iter(events[:500]), writer, batch_size=500, progress=lambda _: None)  # delivered again
    yield settings, env


def _truth(settings: Settings, where: str = "") -> tuple[int, set[str], int]:
    """(rows, event ids, sum of timestamps in ms) of shop's deduplicated events."""
    from chalicelib.storage.clickhouse import connect

    client = connect(settings.clickhouse, database=settings.clickhouse.database)
    rows = client.query(
        "SELECT toString(event_id), toUnixTimestamp64Milli(timestamp) FROM events FINAL "
        f"WHERE project_id = 'shop'{where}"
    ).result_rows
    return len(rows), {r[0] for r in rows}, sum(r[1] for r in rows)


def _export(env: dict[str, str], *args: str) -> Any:
    result = CliRunner().invoke(main, ["export", "--project", "shop", *args], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def _read(fmt: str, data: bytes) -> list[tuple[str, int]]:
    """(event id, timestamp ms) of each exported row."""
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(data.decode())))
        return [(r["event_id"], _ms(r["timestamp"] + "+00:00")) for r in rows]
    if fmt == "jsonl":
        rows = [orjson.loads(line) for line in data.splitlines()]
        return [(r["event_id"], _ms(r["timestamp"] + "+00:00")) for r in rows]
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(data)).to_pylist()
    return [(_uuid(r["event_id"]), _parquet_ms(r["timestamp"])) for r in table]


def _uuid(value: Any) -> str:
    import uuid

    return str(uuid.UUID(bytes=value)) if isinstance(value, bytes) else str(value)


def _parquet_ms(value: Any) -> int:
    return int(value.replace(tzinfo=UTC).timestamp() * 1000) if isinstance(value, datetime) else int(value)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_each_format_reads_back_as_every_deduplicated_event_once(
    stored: tuple[Settings, dict[str, str]], tmp_path: Path, fmt: str
) -> None:
    settings, env = stored
    out = tmp_path / f"shop.{fmt}"
    result = _export(env, "--from", "2026-11-01", "--to", "2026-11-03", "--format", fmt, "--out", str(out))
    rows = _read(fmt, out.read_bytes())
    count, ids, ts_sum = _truth(settings)
    assert count > 1_000
    assert len(rows) == count  # the batch delivered twice is exported once
    assert {r[0] for r in rows} == ids
    assert sum(r[1] for r in rows) == ts_sum
    assert rows == sorted(rows, key=lambda r: r[1])  # in time order
    assert f"exported {count:,} events" in result.output


def test_csv_to_standard_output_has_one_header_and_a_narrower_range(stored: tuple[Settings, dict[str, str]]) -> None:
    settings, env = stored
    result = CliRunner().invoke(
        main, ["export", "--project", "shop", "--from", "2026-11-02", "--to", "2026-11-03"], env=env
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout_bytes.decode().splitlines()
    assert lines[0].startswith('"project_id","timestamp","type","event_id"')
    assert sum(line.startswith('"project_id"') for line in lines) == 1
    assert "_offset" not in lines[0]  # Kafka's bookkeeping stays out
    count, _, _ = _truth(settings, " AND timestamp >= '2026-11-02'")
    assert len(lines) - 1 == count


def test_s3_gets_one_object_per_day_each_readable_alone(
    stored: tuple[Settings, dict[str, str]], moto_server: str
) -> None:
    import boto3

    settings, env = stored
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="exports")
    aws = {name: os.environ[name] for name in os.environ if name.startswith("AWS_")}
    result = CliRunner().invoke(
        main,
        [
            "export",
            "--project",
            "shop",
            "--from",
            "2026-11-01",
            "--to",
            "2026-11-03",
            "--format",
            "parquet",
            "--out",
            "s3://exports/trackflow",
        ],
        env=env | aws,
    )
    assert result.exit_code == 0, result.output
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="exports")["Contents"])
    assert keys == [f"trackflow/shop/2026-11-0{d}.parquet" for d in (1, 2, 3)]
    rows = [row for key in keys for row in _read("parquet", s3.get_object(Bucket="exports", Key=key)["Body"].read())]
    count, ids, _ = _truth(settings)
    assert len(rows) == count and {r[0] for r in rows} == ids


def test_a_persons_export_holds_their_events_and_those_of_the_browsers_linked_to_them(
    stored: tuple[Settings, dict[str, str]], tmp_path: Path
) -> None:
    from chalicelib.storage.clickhouse import connect

    settings, env = stored
    client = connect(settings.clickhouse, database=settings.clickhouse.database)
    # Give one browser's later events a user id, as identify() does: its earlier events belong to that person too.
    anonymous = client.query(
        "SELECT anonymous_id FROM events WHERE project_id = 'shop' GROUP BY anonymous_id ORDER BY count() DESC LIMIT 1"
    ).result_rows[0][0]
    client.command(
        "INSERT INTO events SELECT * REPLACE ('u-42' AS user_id) FROM events FINAL "
        "WHERE project_id = 'shop' AND anonymous_id = {a:String} ORDER BY timestamp DESC LIMIT 1",
        parameters={"a": anonymous},
    )
    out = tmp_path / "person.jsonl"
    _export(env, "--user-id", "u-42", "--format", "jsonl", "--out", str(out))
    rows = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    expected, ids, _ = _truth(settings, f" AND anonymous_id = '{anonymous}'")
    assert len(rows) == expected and {r["event_id"] for r in rows} == ids
    assert {r["anonymous_id"] for r in rows} == {anonymous}
    assert sum(r["user_id"] == "u-42" for r in rows) == 1


def test_bad_arguments_are_usage_errors(stored: tuple[Settings, dict[str, str]]) -> None:
    _, env = stored
    for args, message in [
        (["--format", "parquet"], "Parquet is binary"),
        (["--user-id", "u", "--anonymous-id", "a"], "exactly one of user_id or anonymous_id"),
        (["--user-id", "x" * 10_000], "1 to 128 printable characters"),
        (["--from", "2026-11-03", "--to", "2026-11-01"], "is after --to"),
        (["--out", "s3://"], "s3://BUCKET"),
    ]:
        result = CliRunner().invoke(main, ["export", "--project", "shop", *args], env=env)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, result.output


@pytest.fixture
def api(stored: tuple[Settings, dict[str, str]]) -> Iterator[Any]:
    """The app on the module's database, with project ``shop`` stored (its read token) and ``blog``."""
    from chalice.test import Client

    import app
    from chalicelib import runtime
    from chalicelib.projects import named_project

    settings, _ = stored
    runtime.reset()
    runtime.configure(settings=settings)
    shop, blog = named_project("shop"), named_project("blog")
    runtime.projects().put(shop)
    runtime.projects().put(blog)
    with Client(app.app) as client:
        yield client, shop.read_token, blog.read_token
    runtime.reset()


def _get(client: Any, query: str, token: str) -> Any:
    return client.http.get(f"/v1/stats/export?{query}", headers={"Authorization": f"Bearer {token}"})


def test_the_api_pages_through_a_range_with_cursors_and_gives_each_event_once(
    api: Any, stored: tuple[Settings, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.ownership import export

    client, token, _ = api
    monkeypatch.setattr(export, "API_PAGE_ROWS", 700)
    rows: list[tuple[str, int]] = []
    query = "project=shop&from=2026-11-01&to=2026-11-03&format=jsonl"
    pages = 0
    cursor = ""
    while True:
        response = _get(client, query + (f"&cursor={cursor}" if cursor else ""), token)
        assert response.status_code == 200, response.body
        assert response.headers["Content-Type"] == "application/x-ndjson"
        rows += _read("jsonl", response.body)
        pages += 1
        cursor = response.headers.get("X-Next-Cursor", "")
        if not cursor:
            break
    count, ids, ts_sum = _truth(stored[0])
    assert pages == count // 700 + 1
    assert len(rows) == count and {r[0] for r in rows} == ids and sum(r[1] for r in rows) == ts_sum
    csv_page = _get(client, "project=shop&from=2026-11-01&to=2026-11-03", token)
    assert csv_page.headers["Content-Type"].startswith("text/csv")
    assert csv_page.body.decode().startswith('"project_id","timestamp"')


def test_the_api_refuses_foreign_tokens_and_hostile_parameters_with_json_errors(api: Any) -> None:
    client, shop_token, blog_token = api
    day = "from=2026-11-01&to=2026-11-01"
    for query, token, status, field in [
        (f"project=shop&{day}", blog_token, 403, None),  # another project's token
        (f"project=shop&{day}", "tf_rt_shop.nope", 401, None),
        (f"project=shop&{day}&format=parquet", shop_token, 400, "format"),
        (f"project=shop&{day}&cursor={'9' * 10_000}", shop_token, 400, "cursor"),
        (f"project=shop&{day}&cursor=1_not-a-uuid", shop_token, 400, "cursor"),
        ("project=shop&from=2026-01-01&to=2026-11-01", shop_token, 400, "from"),
        (f"project=shop&{day}&page=/x", shop_token, 400, "page"),
        (f"project={'p' * 10_000}&{day}", shop_token, 400, "project"),
    ]:
        response = _get(client, query, token)
        assert response.status_code == status, (query[:80], response.body[:200])
        error = orjson.loads(response.body)["error"]
        assert error["message"], error
        if field:
            assert error["field"] == field, error
