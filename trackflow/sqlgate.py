"""Read-only SQL for ``trackflow sql`` while ``trackflow dev`` holds the embedded engine.

chDB lets one process open a data directory. While ``trackflow dev`` runs, it
listens on a loopback port for read-only queries and writes that port, and a
random secret, to ``<data_dir>/dev.json`` (mode 0600); ``trackflow sql`` sends
its query there with the secret, and opens the engine itself only when no dev
server is running.

What the gate refuses, whoever asks (docs/security.md): a request without the
secret (401) or with an ``Origin`` header (403: a web page, not the CLI); and,
read from ClickHouse's own parse of the query (``EXPLAIN AST``), anything but
SELECT/SHOW/DESCRIBE, table functions other than generators such as
``numbers`` (``file``, ``url``, ``s3``, ``remote``, ``executable``, ...), the
scalar ``file()``, a ``SETTINGS`` clause and ``INTO OUTFILE``. The session is
read-only with a time cap on every query besides.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import re
import secrets
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

STATE_FILE = "dev.json"
MAX_QUERY_BYTES = 64 * 1024


# Table functions that make rows up rather than read them from somewhere.
GENERATORS = frozenset({"numbers", "numbers_mt", "zeros", "zeros_mt", "values", "generate_series", "generateSeries"})
_ROOTS = ("SelectWithUnionQuery", "ShowTables", "DescribeQuery", "ShowCreate", "ExistsQuery")
_FUNCTION = re.compile(r"^( *)Function (\w+)")


class QueryRefusedError(ValueError):
    """The gate does not run this query; the message says why."""


def check_query(client: Any, sql: str) -> None:
    """Raise :class:`QueryRefusedError` unless ``sql`` only reads TrackFlow's tables (see the module docstring)."""
    try:
        lines = [row[0] for row in client.query(f"EXPLAIN AST {sql}").result_rows]
    except Exception as exc:  # a query ClickHouse can't parse can't run either
        raise QueryRefusedError(
            str(exc).strip().splitlines()[0] if str(exc).strip() else "the query does not parse"
        ) from exc
    if not lines or not lines[0].startswith(_ROOTS):
        raise QueryRefusedError("only SELECT, SHOW and DESCRIBE queries run here")
    for number, line in enumerate(lines):
        stripped = line.strip()
        if stripped == "Set":
            raise QueryRefusedError("SETTINGS clauses are refused here")
        if line.startswith(" Literal"):  # a literal directly under the query: INTO OUTFILE '<path>'
            raise QueryRefusedError("INTO OUTFILE is refused here")
        match = _FUNCTION.match(line)
        if match is None:
            continue
        name = match.group(2)
        table_function = number > 0 and lines[number - 1].strip().startswith("TableExpression")
        if name == "file" or (table_function and name not in GENERATORS):
            raise QueryRefusedError(f"the function {name}() reads outside TrackFlow's tables and is refused here")


def run_query(client: Any, sql: str) -> dict[str, Any]:
    """Run one query on a read-only client (``connect(..., read_only=True)``); columns and rows, JSON-friendly.

    Raises :class:`QueryRefusedError` for what :func:`check_query` refuses.
    """
    check_query(client, sql)
    result = client.query(sql)
    rows = [
        [value if isinstance(value, (int, float, str, type(None))) else str(value) for value in row]
        for row in result.result_rows
    ]
    return {"columns": list(result.column_names), "rows": rows}


def _handler(client: Any, secret: str) -> type[BaseHTTPRequestHandler]:
    expected = f"Bearer {secret}".encode()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            if self.headers.get("Origin") is not None:
                self._send(403, {"error": "requests from web pages (with an Origin header) are refused"})
                return
            given = (self.headers.get("Authorization") or "").encode("utf-8", "replace")
            if not hmac.compare_digest(given, expected):
                self._send(401, {"error": f"send the secret from {STATE_FILE} as 'Authorization: Bearer <secret>'"})
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if not 0 <= length <= MAX_QUERY_BYTES:
                self._send(413, {"error": f"send a query of at most {MAX_QUERY_BYTES} bytes"})
                return
            sql = self.rfile.read(length).decode("utf-8", "replace")
            try:
                self._send(200, run_query(client, sql))
            except QueryRefusedError as exc:
                self._send(403, {"error": str(exc)})
            except Exception as exc:  # any ClickHouse error goes back to the caller as text
                self._send(400, {"error": str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)})

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body, default=str).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("sql gate: " + format, *args)

    return Handler


class SqlGate:
    """The loopback query endpoint of a running ``trackflow dev``."""

    def __init__(self, client: Any, *, data_dir: Path, host: str = "127.0.0.1") -> None:
        self._secret = secrets.token_urlsafe(32)
        self._server = ThreadingHTTPServer((host, 0), _handler(client, self._secret))
        self._state = data_dir / STATE_FILE
        self.url = f"http://{host}:{self._server.server_address[1]}/"

    def start(self) -> SqlGate:
        threading.Thread(target=self._server.serve_forever, name="sql-gate", daemon=True).start()
        state = json.dumps({"pid": os.getpid(), "sql_url": self.url, "secret": self._secret}).encode()
        self._state.unlink(missing_ok=True)  # a file left by another user keeps its owner and mode
        fd = os.open(self._state, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(state)
        return self

    def stop(self) -> None:
        try:
            if json.loads(self._state.read_text()).get("pid") == os.getpid():
                self._state.unlink()
        except (OSError, ValueError):
            pass
        self._server.shutdown()
        self._server.server_close()


def query_running_dev(data_dir: Path, sql: str, *, timeout_s: float = 30.0) -> dict[str, Any] | None:
    """Ask a running dev server; None when none is running for ``data_dir``."""
    try:
        state = json.loads((data_dir / STATE_FILE).read_text())
        url, secret = state["sql_url"], state["secret"]
    except (OSError, ValueError, KeyError):
        return None
    request = urllib.request.Request(
        url, data=sql.encode(), method="POST", headers={"Authorization": f"Bearer {secret}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        body = json.loads(exc.read() or b"{}")
        raise RuntimeError(body.get("error", f"query failed with HTTP {exc.code}")) from None
    except OSError:
        return None  # a stale state file: the server is gone
