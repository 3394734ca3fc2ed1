"""``trackflow export``: a project's stored events, or one person's, as CSV, JSON lines or Parquet.

To a file, to standard output, or to S3 (one object per UTC day, written with
boto3, which honours ``AWS_ENDPOINT_URL`` for an emulator). The rows and the
day-by-day reading are :mod:`chalicelib.ownership.export`'s, shared with the API.
"""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any, BinaryIO

import click

from chalicelib.ownership.export import FORMATS, Selection, day_slices, days_range, slices, stored_days
from chalicelib.ownership.people import Person
from trackflow.cli_common import counting, current_settings

DEFAULT_DAYS = 30


def _client() -> Any:
    from chalicelib.errors import TrackflowError
    from chalicelib.storage.clickhouse import connect

    settings = current_settings()
    try:
        return connect(settings.clickhouse, database=settings.clickhouse.database, read_only=True)
    except TrackflowError as exc:
        raise click.ClickException(exc.message) from None


class _ParquetFile:
    """One Parquet file from each day's Parquet bytes (row groups appended with pyarrow)."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._writer: Any = None

    def write(self, data: bytes) -> int:
        import pyarrow.parquet as pq

        table = pq.read_table(io.BytesIO(data))
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._out, table.schema)
        self._writer.write_table(table)
        return int(table.num_rows)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def _rows(data: bytes, fmt: str, first: bool) -> int:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return int(pq.read_metadata(io.BytesIO(data)).num_rows)
    return data.count(b"\n") - (1 if fmt == "csv" and first else 0)


def _s3_target(out: str) -> tuple[str, str]:
    bucket, _, prefix = out.removeprefix("s3://").partition("/")
    if not bucket:
        raise click.BadParameter("an S3 target is s3://BUCKET[/PREFIX]", param_hint="--out")
    return bucket, prefix.strip("/")


@click.command("export")
@click.option("--project", "project_id", required=True, help="The project's id (`trackflow projects list`).")
@click.option(
    "--from", "first", type=click.DateTime(["%Y-%m-%d"]), help="First UTC day (default: 30 days before --to)."
)
@click.option("--to", "last", type=click.DateTime(["%Y-%m-%d"]), help="Last UTC day, included (default: today).")
@click.option("--format", "fmt", type=click.Choice(list(FORMATS)), default="csv", show_default=True)
@click.option(
    "--out",
    default="-",
    show_default=True,
    help="A file, - for standard output (CSV and JSON lines), or s3://BUCKET/PREFIX (an object per day).",
)
@click.option("--user-id", help="Only this person: the events with this user id and every anonymous id linked to it.")
@click.option("--anonymous-id", help="Only this browser's events.")
def export(
    project_id: str,
    first: datetime | None,
    last: datetime | None,
    fmt: str,
    out: str,
    user_id: str | None,
    anonymous_id: str | None,
) -> None:
    """Export stored events (each once, as reports count them) day by day, with progress on standard error.

    \b
    Examples:
      trackflow export --project shop --from 2026-11-01 --to 2026-11-30 --out november.csv
      trackflow export --project shop --format parquet --out s3://my-bucket/trackflow
      trackflow export --project shop --user-id u-42 --format jsonl     # a GDPR access request

    A person's export (--user-id or --anonymous-id) covers every day they were
    seen unless --from/--to narrow it.
    """
    from chalicelib.errors import RequestError
    from chalicelib.ownership.people import person_from

    person: Person | None = None
    if user_id is not None or anonymous_id is not None:
        try:
            person = person_from({"user_id": user_id, "anonymous_id": anonymous_id})
        except RequestError as exc:
            raise click.UsageError(exc.message) from None
    today = datetime.now(UTC).date()
    last_day: date = last.date() if last else today
    default_first = date(2000, 1, 1) if person else last_day - timedelta(days=DEFAULT_DAYS - 1)
    first_day: date = first.date() if first else default_first
    if first_day > last_day:
        raise click.BadParameter(f"--from {first_day} is after --to {last_day}", param_hint="--from")
    if fmt == "parquet" and out == "-":
        raise click.UsageError("Parquet is binary: give --out FILE or --out s3://BUCKET/PREFIX")
    if out.startswith("s3://"):
        _s3_target(out)
    client = _client()
    from chalicelib.ownership.people import person_ids

    ids = None if person is None else person_ids(client, project_id, person)
    wanted = Selection(project_id, *days_range(first_day, last_day), ids)
    selection = stored_days(client, wanted)
    started = time.monotonic()
    if selection is None:
        click.echo(f"no events of {project_id} from {first_day} to {last_day}", err=True)
        selection = Selection(project_id, wanted.start, wanted.start, ids)
    total = len(day_slices(selection.start, selection.end))
    days = slices(client, selection, fmt, header_each=out.startswith("s3://"))
    rows, size = _write(days, total, fmt, out, project_id)
    seconds = time.monotonic() - started
    click.echo(f"exported {rows:,} events ({size / 1e6:,.1f} MB) in {seconds:.1f} s to {out}", err=True)


def _write(days: Iterator[tuple[datetime, bytes]], total: int, fmt: str, out: str, project_id: str) -> tuple[int, int]:
    """Write each day's bytes to ``out`` as it is read; (rows, bytes)."""
    rows = size = 0
    extension = FORMATS[fmt][3]
    with counting(total, "exporting", unit="days", err=True) as advance:
        if out.startswith("s3://"):
            import boto3

            bucket, prefix = _s3_target(out)
            s3 = boto3.client("s3")
            for day, data in days:
                key = f"{prefix}/{project_id}/{day:%Y-%m-%d}.{extension}".lstrip("/")
                s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType=FORMATS[fmt][2])
                rows += _rows(data, fmt, True)
                size += len(data)
                advance(1)
            return rows, size
        stream: BinaryIO = sys.stdout.buffer if out == "-" else open(out, "wb")  # noqa: SIM115
        try:
            parquet = _ParquetFile(stream) if fmt == "parquet" else None
            for number, (_, data) in enumerate(days):
                if parquet is not None:
                    rows += parquet.write(data) if data else 0
                else:
                    stream.write(data)
                    rows += _rows(data, fmt, number == 0)
                size += len(data)
                advance(1)
            if parquet is not None:
                parquet.close()
        finally:
            if out != "-":
                stream.close()
    return rows, size
