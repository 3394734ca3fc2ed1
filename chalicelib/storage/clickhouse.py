"""ClickHouse access: one clickhouse-connect client, embedded (chDB) or a server.

:func:`connect` picks the engine from the settings. chDB allows a single engine
directory per process and fails with only ``Error initializing EmbeddedServer``
when another process holds it; that case becomes :class:`EngineLockedError`
with the real cause spelled out.

:class:`EventWriter` writes a whole batch of event rows with one insert, after
marking the hours they fall on as changed for the rollups' compaction
(:mod:`chalicelib.rollups.compaction`). It tells data ClickHouse refuses
(:class:`RefusedDataError`: isolate and dead-letter it) from failures worth a
retry (:class:`StorageError`).
"""

from __future__ import annotations

import logging
import re
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from chalicelib.errors import EngineLockedError, RefusedDataError, ServiceUnavailableError, StorageError
from chalicelib.rollups.compaction import INSERT_TIME_LIMIT_S, mark_changed
from chalicelib.settings import ClickHouseSettings

logger = logging.getLogger(__name__)

# Columns of the events table that come straight from a normalised event, in insert order.
EVENT_FIELDS = (
    "project_id",
    "timestamp",
    "type",
    "event_id",
    "anonymous_id",
    "session_id",
    "user_id",
    "client_ts",
    "received_at",
    "url",
    "url_host",
    "url_path",
    "url_query",
    "referrer",
    "referrer_domain",
    "title",
    "screen",
    "language",
    "timezone",
    "environment",
    "sdk_version",
    "user_agent",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "props",
)
# Derived from the request by collect (chalicelib.collect.client_info); absent from
# messages written before they existed, so ingest fills these defaults.
CLIENT_DEFAULTS: tuple[tuple[str, object], ...] = (
    ("browser", ""),
    ("browser_version", ""),
    ("os", ""),
    ("os_version", ""),
    ("device_type", ""),
    ("is_bot", 0),
    ("country", ""),
    ("visitor_hash", 0),
)
CLIENT_FIELDS = tuple(name for name, _ in CLIENT_DEFAULTS)
PROVENANCE_FIELDS = ("_topic", "_partition", "_offset")
EVENT_COLUMNS = EVENT_FIELDS + CLIENT_FIELDS + PROVENANCE_FIELDS
DEAD_LETTER_COLUMNS = (
    "failed_at",
    "reason",
    "source_topic",
    "source_partition",
    "source_offset",
    "event_index",
    "key",
    "value",
)

# A dead letter's value is a whole message ({"v", "shared", "events"}) or one event of it (ingest's
# event-level letters), or bytes nobody can read. These read its events and their fields either way
# ("" where it holds none).
LETTER_EVENTS = "if(JSONHas(value, 'events'), JSONExtractArrayRaw(value, 'events'), [value])"


def letter_field(name: str, event: str = "e") -> str:
    """Field ``name`` of ``event`` (one of :data:`LETTER_EVENTS`, or ``value`` itself), else the message's
    shared one."""
    return (
        f"if(JSONHas({event}, '{name}'), JSONExtractString({event}, '{name}'), "
        f"JSONExtractString(value, 'shared', '{name}'))"
    )


_embedded_lock = threading.Lock()
_embedded_clients: dict[str, Any] = {}


# Read-only clients: no writes or DDL, and a bound on any one query.
READ_ONLY_SETTINGS = {"readonly": "2", "max_execution_time": "30"}


def cluster_settings(settings: ClickHouseSettings) -> dict[str, str]:
    """What every client sets on a cluster (none on one server), so compaction's reasoning holds there.

    - Inserts into a Distributed table return once the shard has the rows, not
      when they are queued for sending in the background: the mark after an
      insert then comes after its events are stored.
    - Reads skip replicas more than ``replica_lag_s`` behind, and fail rather
      than read a stale one. Compaction only takes hours quiet for longer
      than that, and reports only use a generation that long after it was
      written (``visible_at``), so any replica read holds what they need.
    """
    if settings.cluster is None:
        return {}
    return {
        "insert_distributed_sync": "1",
        "max_replica_delay_for_distributed_queries": str(max(1, int(settings.replica_lag_s))),
        "fallback_to_stale_replicas_for_distributed_queries": "0",
    }


def connect(
    settings: ClickHouseSettings, *, database: str | None = None, read_only: bool = False, private: bool = False
) -> Any:
    """A clickhouse-connect client for the configured engine.

    ``database`` becomes the client's default and must exist (after migrating);
    without it the client can create it. Embedded clients are cached per
    database: chDB shares one engine per process between them.

    ``read_only`` gives a client that can't write. For chDB it is a client of
    its own (not cached): chDB applies settings to the client's session and
    ``readonly`` can never be switched off there again, so the session the
    writer uses must never get it. ``private`` gives a writable chDB client of
    its own too, for work that must not queue behind the writer's calls (a
    chDB client runs one call at a time).
    """
    import clickhouse_connect

    if (read_only or private) and settings.embedded:
        connect(settings, database=database)  # opens the engine first, turning a held lock into EngineLockedError
        own = clickhouse_connect.get_client(dsn=f"chdb://{settings.data_path}", database=database)
        if read_only:
            for name, value in READ_ONLY_SETTINGS.items():
                own.command(f"SET {name} = {value}")
        return own
    if not settings.embedded:
        try:
            common: dict[str, Any] = {
                "username": settings.user,
                "password": settings.resolved_password(),
                "database": database or "",
                "autogenerate_session_id": False,
                "settings": (READ_ONLY_SETTINGS if read_only else {}) | cluster_settings(settings) or None,
                "connect_timeout": settings.connect_timeout_s,
                "send_receive_timeout": settings.query_timeout_s,
                # Retrying is the caller's business (the trigger retries the batch, a client its request).
                "query_retries": 0,
            }
            if settings.url is not None:
                return clickhouse_connect.get_client(dsn=settings.url, **common)
            return clickhouse_connect.get_client(
                host=settings.host, port=settings.port, secure=settings.secure, **common
            )
        except Exception as exc:
            where = settings.url or f"{settings.host}:{settings.port}"
            raise StorageError(
                f"cannot connect to ClickHouse at {where} ({exc}); check CLICKHOUSE_URL / CLICKHOUSE_HOST and credentials"
            ) from exc
    path = str(settings.data_path)
    with _embedded_lock:
        # One chDB engine per process: every caller in this process shares it.
        client = _embedded_clients.get(f"{path}\0{database}")
        if client is None:
            settings.data_path.mkdir(parents=True, exist_ok=True)
            try:
                client = clickhouse_connect.get_client(dsn=f"chdb://{path}", database=database)
            except Exception as exc:
                if "EmbeddedServer" in str(exc):
                    raise EngineLockedError(
                        f"the embedded ClickHouse in {path} is held by another process "
                        "(chDB allows one process per data directory: the real cause is "
                        "'Cannot lock file .../status'). Stop the other `trackflow` process, "
                        "or give this one its own TRACKFLOW_DATA_DIR, or set CLICKHOUSE_URL to a ClickHouse "
                        "server; `trackflow dev` serves the API and ingests in one process, and `trackflow sql` "
                        "reads while `trackflow dev` or `trackflow trigger` holds the engine."
                    ) from exc
                raise
            _embedded_clients[f"{path}\0{database}"] = client
        return client


# ClickHouse codes for a database or table that is not there: the migrations have not run.
_NOT_MIGRATED = {"81", "60"}


def engine_answer(call: Callable[[], Any]) -> Any:
    """``call``'s answer for a request; an engine that is away, locked or refusing is a 503 that says
    why (and what to do), never a raw 500."""
    from clickhouse_connect.driver.exceptions import ClickHouseError

    try:
        return call()
    except (StorageError, EngineLockedError) as exc:
        raise ServiceUnavailableError(f"ClickHouse is not reachable: {exc.message}") from exc
    except ClickHouseError as exc:
        text = str(exc)
        code = re.search(r"Code: (\d+)", text)
        if code and code.group(1) in _NOT_MIGRATED:
            raise ServiceUnavailableError(
                f"ClickHouse has no TrackFlow tables yet: run `trackflow migrate` (or start `trackflow dev`). ({text[:200]})"
            ) from exc
        raise ServiceUnavailableError(f"ClickHouse could not answer: {text[:300]}") from exc


# ClickHouse error codes that mean "this data can't be stored", not "try again":
# CANNOT_PARSE_*, TYPE_MISMATCH, ARGUMENT_OUT_OF_BOUND, CANNOT_CONVERT_TYPE,
# INCORRECT_DATA, TOO_LARGE_STRING_SIZE, VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE,
# CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN. Anything else (timeouts, memory, too
# many parts, unreachable server) is transient and the batch is retried.
DATA_ERROR_CODES = frozenset({6, 27, 38, 41, 53, 69, 70, 72, 117, 131, 321, 349})
_CODE = re.compile(r"Code: (\d+)")
_HOUR_MS = 3_600_000
# Ingest bounds every timestamp (chalicelib.ingest), so the partition guard
# only ever refused honest batches that replayed months of backlog. The
# server stops an insert still running after the time limit, so none lands
# after compaction's settle time (chalicelib.rollups.compaction).
INSERT_SETTINGS = {
    "insert_deduplicate": 0,
    "max_partitions_per_insert_block": 0,
    "max_execution_time": INSERT_TIME_LIMIT_S,
}


def refused_data_reason(exc: BaseException) -> str | None:
    """ClickHouse's message when ``exc`` says the data itself can't be stored; None when it is transient."""
    from clickhouse_connect.driver.exceptions import DataError

    text = str(exc)
    if isinstance(exc, DataError):  # the client could not serialise a value for its column
        cause = exc.__cause__ or exc.__context__
        return f"{text}: {cause}" if cause is not None else text
    code = _CODE.search(text)
    if code is not None and int(code.group(1)) in DATA_ERROR_CODES:
        return text[code.start() :].split("\n", 1)[0][:1000]
    return None


def changed_hours(rows: Sequence[Sequence[Any]]) -> dict[tuple[str, datetime], int]:
    """How many event rows (``EVENT_COLUMNS`` order) fall on each (project, UTC hour)."""
    counts = Counter((row[0], row[1] // _HOUR_MS) for row in rows)
    return {(project, datetime.fromtimestamp(hour * 3600, UTC)): n for (project, hour), n in counts.items()}


def earliest_events(rows: Sequence[Sequence[Any]]) -> dict[tuple[str, datetime], datetime]:
    """The earliest event time of the rows on each (project, UTC hour): a mark that brings events older
    than its own time by more than a little is late (chalicelib.rollups.sql.LATE_MARK)."""
    earliest: dict[tuple[str, int], int] = {}
    for row in rows:
        key = (row[0], row[1] // _HOUR_MS)
        earliest[key] = min(earliest.get(key, row[1]), row[1])
    return {
        (project, datetime.fromtimestamp(hour * 3600, UTC)): datetime.fromtimestamp(ms / 1000, UTC)
        for (project, hour), ms in earliest.items()
    }


class EventWriter:
    """Writes normalised events (and dead letters) to ClickHouse."""

    def __init__(self, client: Any, *, database: str) -> None:
        self._client = client
        self._database = database
        self._events_table = f"{database}.events"
        self._dead_letters_table = f"{database}.dead_letters"
        self._event_types: list[str] | None = None

    def _types(self) -> list[str]:
        """The events columns' types as sent: LowCardinality columns as plain String.

        clickhouse-connect builds a LowCardinality dictionary in Python for
        every such column of every insert; ClickHouse does the same in C++ when
        it converts the block to the table's types.
        """
        if self._event_types is None:
            described = dict(
                self._client.query(
                    "SELECT name, type FROM system.columns WHERE database = {db:String} AND table = 'events'",
                    parameters={"db": self._database},
                ).result_rows
            )
            self._event_types = [
                "String" if described[name] == "LowCardinality(String)" else described[name] for name in EVENT_COLUMNS
            ]
        return self._event_types

    def insert_events(self, rows: Sequence[Sequence[Any]]) -> int:
        """One insert of rows shaped like ``EVENT_COLUMNS``; return how many were written.

        The hours the rows fall on are marked changed before the insert and
        again after it, so compaction rebuilds their rollups whatever happens
        to the insert, and whenever it lands. Raises
        :class:`RefusedDataError` when ClickHouse refuses a value,
        :class:`StorageError` for anything else.
        """
        try:
            hours, earliest = changed_hours(rows), earliest_events(rows)
            mark_changed(self._client, dict.fromkeys(hours, 0), database=self._database, earliest=earliest)
            self._client.insert(
                self._events_table,
                rows,
                column_names=EVENT_COLUMNS,
                column_type_names=self._types(),
                settings=INSERT_SETTINGS,
            )
            mark_changed(self._client, hours, database=self._database, earliest=earliest)
        except Exception as exc:
            reason = refused_data_reason(exc)
            if reason is not None:
                raise RefusedDataError(f"ClickHouse refused {len(rows)} events: {reason}", reason=reason) from exc
            raise StorageError(f"insert of {len(rows)} events failed: {exc}") from exc
        return len(rows)

    def insert_dead_letters(self, rows: Sequence[Sequence[Any]]) -> None:
        try:
            self._client.insert(self._dead_letters_table, rows, column_names=DEAD_LETTER_COLUMNS)
        except Exception as exc:
            raise StorageError(f"insert of {len(rows)} dead letters failed: {exc}") from exc
