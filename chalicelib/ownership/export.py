"""Export of stored events: one statement for ``trackflow export``, the export API and a person's access request.

Rows come from ``events FINAL`` (each event once, however often it was
delivered), every column but Kafka's bookkeeping (:data:`INTERNAL_COLUMNS`),
ordered by time and event id. A range is read one UTC day at a time
(:func:`day_slices`), so memory holds one day's rows, never the whole range;
the API reads pages of at most :data:`API_PAGE_ROWS` rows after a cursor.

ClickHouse writes the formats itself (``CSVWithNames``, ``JSONEachRow``,
``Parquet``); nothing here converts values row by row.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from chalicelib.errors import RequestError
from chalicelib.ownership.people import PersonIds

# Name -> (ClickHouse format of the first slice, of the slices after it, media type, file extension).
FORMATS = {
    "csv": ("CSVWithNames", "CSV", "text/csv; charset=utf-8", "csv"),
    "jsonl": ("JSONEachRow", "JSONEachRow", "application/x-ndjson", "jsonl"),
    "parquet": ("Parquet", "Parquet", "application/vnd.apache.parquet", "parquet"),
}
API_FORMATS = ("csv", "jsonl")  # API Gateway passes text bodies; Parquet is the CLI's
INTERNAL_COLUMNS = ("_topic", "_partition", "_offset", "inserted_at")
API_PAGE_ROWS = 10_000
API_MAX_DAYS = 31
_CURSOR = re.compile(r"^([0-9]{1,15})_([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$")


@dataclass(frozen=True)
class Selection:
    """Which events: a project, a time range (``end`` excluded), and optionally one person's
    (:func:`chalicelib.ownership.people.person_ids`)."""

    project_id: str
    start: datetime
    end: datetime
    person: PersonIds | None = None


def day_slices(start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """``[start, end)`` cut at UTC midnights."""
    slices = []
    at = start
    while at < end:
        midnight = datetime.combine(at.date(), datetime.min.time(), UTC) + timedelta(days=1)
        slices.append((at, min(midnight, end)))
        at = midnight
    return slices


def days_range(first: date, last: date) -> tuple[datetime, datetime]:
    """The UTC instants from the start of ``first`` to the end of ``last``."""
    start = datetime.combine(first, datetime.min.time(), UTC)
    return start, datetime.combine(last, datetime.min.time(), UTC) + timedelta(days=1)


def _where(selection: Selection, params: dict[str, Any]) -> str:
    params.update(
        project=selection.project_id,
        start=int(selection.start.timestamp() * 1000),
        end=int(selection.end.timestamp() * 1000),
    )
    where = (
        "project_id = {project:String} AND timestamp >= fromUnixTimestamp64Milli({start:Int64}, 'UTC') "
        "AND timestamp < fromUnixTimestamp64Milli({end:Int64}, 'UTC')"
    )
    return where if selection.person is None else f"{where} AND {selection.person.condition(params)}"


def statement(
    selection: Selection, *, after: tuple[int, str] | None = None, limit: int | None = None
) -> tuple[str, dict[str, Any]]:
    """The ``SELECT`` of the selected events and its parameters; ``after`` is a page's cursor."""
    params: dict[str, Any] = {}
    where = _where(selection, params)
    if after is not None:
        params.update(after_ms=after[0], after_id=after[1])
        where += " AND (timestamp, event_id) > (fromUnixTimestamp64Milli({after_ms:Int64}, 'UTC'), toUUID({after_id:String}))"
    sql = (
        f"SELECT * EXCEPT ({', '.join(INTERNAL_COLUMNS)}) FROM events FINAL WHERE {where} ORDER BY timestamp, event_id"
    )
    return (sql if limit is None else f"{sql} LIMIT {int(limit)}"), params


def stored_days(client: Any, selection: Selection) -> Selection | None:
    """The selection narrowed to the UTC days that hold its events, None when none do: a person's
    export over years reads only the days they were seen."""
    params: dict[str, Any] = {}
    first, last, rows = client.query(
        f"SELECT min(timestamp), max(timestamp), count() FROM events WHERE {_where(selection, params)}",
        parameters=params,
    ).result_rows[0]
    if not rows:
        return None
    start, end = days_range(first.date(), last.date())
    return Selection(selection.project_id, max(selection.start, start), min(selection.end, end), selection.person)


def slices(
    client: Any, selection: Selection, fmt: str, *, header_each: bool = False
) -> Iterator[tuple[datetime, bytes]]:
    """Each UTC day of the selection as ``fmt`` bytes, with its day, read when the caller asks for it.
    CSV has its header on the first day only, or on every day with ``header_each`` (a file per day)."""
    first_format, rest_format, _, _ = FORMATS[fmt]
    for number, (start, end) in enumerate(day_slices(selection.start, selection.end)):
        sql, params = statement(Selection(selection.project_id, start, end, selection.person))
        chosen = first_format if number == 0 or header_each else rest_format
        yield start, client.raw_query(sql, parameters=params, fmt=chosen)


def parse_cursor(text: str) -> tuple[int, str]:
    """A page cursor (``<epoch ms>_<event id>``, as the previous page's ``X-Next-Cursor`` gave it)."""
    match = _CURSOR.fullmatch(text)
    if match is None:
        raise RequestError("cursor is not one this API gave (expected <epoch ms>_<event id>)", field="cursor")
    return int(match.group(1)), match.group(2)


def page(client: Any, selection: Selection, fmt: str, *, cursor: str | None) -> tuple[bytes, str | None]:
    """One API page: at most :data:`API_PAGE_ROWS` rows after ``cursor``, and the next page's cursor
    (None after the last)."""
    after = parse_cursor(cursor) if cursor is not None else None
    sql, params = statement(selection, after=after, limit=API_PAGE_ROWS)
    body = client.raw_query(sql, parameters=params, fmt=FORMATS[fmt][0])
    last_sql = (
        f"SELECT count(), toUnixTimestamp64Milli(max(timestamp)), toString(argMax(event_id, (timestamp, event_id))) "
        f"FROM ({sql})"
    )
    rows, last_ms, last_id = client.query(last_sql, parameters=params).result_rows[0]
    return body, (f"{last_ms}_{last_id}" if rows == API_PAGE_ROWS else None)
