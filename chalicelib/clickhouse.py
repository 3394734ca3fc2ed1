"""ClickHouse access: one clickhouse-connect client, embedded (chDB) or a server.

:func:`connect` picks the engine from the settings. chDB allows a single engine
directory per process and fails with only ``Error initializing EmbeddedServer``
when another process holds it; that case becomes :class:`EngineLockedError`
with the real cause spelled out.

:class:`EventWriter` turns normalised events into rows and writes a whole batch
with one insert carrying a deduplication token, so an identical redelivery is
dropped by ClickHouse itself.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from chalicelib.errors import EngineLockedError, StorageError
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
# Derived from the request by collect (chalicelib.client_info); absent from
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

_embedded_lock = threading.Lock()
_embedded_clients: dict[str, Any] = {}


# Read-only clients: no writes or DDL, and a bound on any one query.
READ_ONLY_SETTINGS = {"readonly": "2", "max_execution_time": "30"}


def connect(settings: ClickHouseSettings, *, database: str | None = None, read_only: bool = False) -> Any:
    """A clickhouse-connect client for the configured engine.

    ``database`` becomes the client's default and must exist (after migrating);
    without it the client can create it. Embedded clients are cached per
    database: chDB shares one engine per process between them.

    ``read_only`` gives a client that can't write. For chDB it is a client of
    its own (not cached): chDB applies settings to the client's session and
    ``readonly`` can never be switched off there again, so the session the
    writer uses must never get it.
    """
    import clickhouse_connect

    if read_only and settings.embedded:
        connect(settings, database=database)  # opens the engine first, turning a held lock into EngineLockedError
        own = clickhouse_connect.get_client(dsn=f"chdb://{settings.data_path}", database=database)
        for name, value in READ_ONLY_SETTINGS.items():
            own.command(f"SET {name} = {value}")
        return own
    if not settings.embedded:
        try:
            if settings.url is not None:
                return clickhouse_connect.get_client(
                    dsn=settings.url,
                    username=settings.user,
                    password=settings.password,
                    database=database or "",
                    autogenerate_session_id=False,
                    settings=READ_ONLY_SETTINGS if read_only else None,
                )
            return clickhouse_connect.get_client(
                host=settings.host,
                port=settings.port,
                username=settings.user,
                password=settings.password,
                secure=settings.secure,
                database=database or "",
                autogenerate_session_id=False,
                settings=READ_ONLY_SETTINGS if read_only else None,
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
                        "or give this one its own TRACKFLOW_DATA_DIR, or set CLICKHOUSE_URL."
                    ) from exc
                raise
            _embedded_clients[f"{path}\0{database}"] = client
        return client


class EventWriter:
    """Writes normalised events (and dead letters) to ClickHouse."""

    def __init__(self, client: Any, *, database: str) -> None:
        self._client = client
        self._events_table = f"{database}.events"
        self._dead_letters_table = f"{database}.dead_letters"

    def insert_events(self, rows: Sequence[Sequence[Any]], *, dedup_token: str) -> None:
        """One insert of rows shaped like ``EVENT_COLUMNS``; raises StorageError on failure."""
        try:
            self._client.insert(
                self._events_table,
                rows,
                column_names=EVENT_COLUMNS,
                # The rollups' materialized views drop a redelivered batch too.
                settings={
                    "insert_deduplication_token": dedup_token,
                    "deduplicate_blocks_in_dependent_materialized_views": 1,
                },
            )
        except Exception as exc:
            raise StorageError(f"insert of {len(rows)} events failed: {exc}") from exc

    def stored_event_ids(self, keys: Sequence[tuple[str, int, str, str]]) -> set[tuple[str, str]]:
        """Which of these (project_id, timestamp ms, type, event_id) are stored, as (project_id, event_id).

        Looked up by the table's whole sort key (project, day, type, event id).
        """
        wanted = [(p, time.strftime("%Y-%m-%d", time.gmtime(ts // 1000)), t, e) for p, ts, t, e in keys]
        try:
            result = self._client.query(
                f"SELECT project_id, toString(event_id) FROM {self._events_table} "
                "WHERE (project_id, toDate(timestamp), type, event_id) IN {keys:Array(Tuple(String, Date, String, UUID))}",
                parameters={"keys": wanted},
            )
        except Exception as exc:
            raise StorageError(f"looking up {len(keys)} resent events failed: {exc}") from exc
        return {(p, e) for p, e in result.result_rows}

    def insert_dead_letters(self, rows: Sequence[Sequence[Any]]) -> None:
        try:
            self._client.insert(self._dead_letters_table, rows, column_names=DEAD_LETTER_COLUMNS)
        except Exception as exc:
            raise StorageError(f"insert of {len(rows)} dead letters failed: {exc}") from exc
