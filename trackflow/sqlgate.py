"""Read-only SQL for ``trackflow sql`` while ``trackflow dev`` holds the embedded engine.

chDB lets one process open a data directory. While ``trackflow dev`` runs, it
listens on a loopback port for read-only queries and writes that port to
``<data_dir>/dev.json``; ``trackflow sql`` sends its query there, and opens the
engine itself only when no dev server is running.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

STATE_FILE = "dev.json"
MAX_QUERY_BYTES = 64 * 1024


def run_query(client: Any, sql: str) -> dict[str, Any]:
    """Run one query on a read-only client (``connect(..., read_only=True)``); columns and rows, JSON-friendly."""
    result = client.query(sql)
    rows = [
        [value if isinstance(value, (int, float, str, type(None))) else str(value) for value in row]
        for row in result.result_rows
    ]
    return {"columns": list(result.column_names), "rows": rows}


def _handler(client: Any) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_QUERY_BYTES:
                self._send(413, {"error": f"query longer than {MAX_QUERY_BYTES} bytes"})
                return
            sql = self.rfile.read(length).decode("utf-8", "replace")
            try:
                self._send(200, run_query(client, sql))
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
        self._server = ThreadingHTTPServer((host, 0), _handler(client))
        self._state = data_dir / STATE_FILE
        self.url = f"http://{host}:{self._server.server_address[1]}/"

    def start(self) -> SqlGate:
        threading.Thread(target=self._server.serve_forever, name="sql-gate", daemon=True).start()
        self._state.write_text(json.dumps({"pid": os.getpid(), "sql_url": self.url}))
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
        url = json.loads((data_dir / STATE_FILE).read_text())["sql_url"]
    except (OSError, ValueError, KeyError):
        return None
    request = urllib.request.Request(url, data=sql.encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        body = json.loads(exc.read() or b"{}")
        raise RuntimeError(body.get("error", f"query failed with HTTP {exc.code}")) from None
    except OSError:
        return None  # a stale state file: the server is gone
