"""ClickHouse's HTTP interface in front of the test session's chDB engine.

The deployed functions reach ClickHouse over HTTP (``CLICKHOUSE_URL``), and no
ClickHouse server installs here, so the bundle test points them at this: an
HTTP listener that hands each request's SQL to chDB, the same ClickHouse
engine the rest of the suite reads, and answers the way the server does
(``param_*`` query parameters, ``X-ClickHouse-*`` headers, ``Code: N. DB::Exception`` errors with HTTP
500). It covers what clickhouse-connect sends: the query in the ``query``
parameter or in the body, a compressed body, ``INSERT ... FORMAT Native``
followed by the data, and the ``database`` parameter. Test tooling only.
"""

from __future__ import annotations

import base64
import re
import tempfile
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import chdb

_INSERT = re.compile(rb"^\s*(INSERT\s+INTO\s+.+?)\s+FORMAT\s+(\w+)\s*$", re.IGNORECASE | re.DOTALL)
_TRAILING_FORMAT = re.compile(r"\s+FORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)
_CODE = re.compile(r"Code: (\d+)")


def _decompress(data: bytes, encoding: str) -> bytes:
    if encoding == "lz4":
        import lz4.frame

        return lz4.frame.decompress(data)  # type: ignore[no-any-return]
    if encoding == "zstd":
        from backports import zstd

        return zstd.decompress(data)
    if encoding == "gzip":
        import gzip

        return gzip.decompress(data)
    raise ValueError(f"unsupported Content-Encoding {encoding}")


class ClickHouseHttp:
    """Serve ``data_path``'s chDB engine on a loopback port until ``close()``."""

    def __init__(self, data_path: Path, *, password: str | None = None) -> None:
        self._password = password  # when set, every request must carry it for user default (as the server checks)
        self._conn = chdb.connect(str(data_path))
        self._lock = threading.Lock()
        self._scratch = Path(tempfile.mkdtemp(prefix="tf-chhttp-"))
        shim = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def do_GET(self) -> None:
                shim._answer(self)

            def do_POST(self) -> None:
                shim._answer(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._conn.close()

    def _body(self, request: BaseHTTPRequestHandler) -> bytes:
        if request.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(request.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    request.rfile.readline()
                    break
                parts.append(request.rfile.read(size))
                request.rfile.readline()
            body = b"".join(parts)
        else:
            body = request.rfile.read(int(request.headers.get("Content-Length") or 0))
        encoding = request.headers.get("Content-Encoding")
        return _decompress(body, encoding) if body and encoding else body

    def _authenticated(self, request: BaseHTTPRequestHandler) -> bool:
        if self._password is None:
            return True
        expected = "Basic " + base64.b64encode(f"default:{self._password}".encode()).decode()
        return (
            request.headers.get("Authorization") == expected
            or request.headers.get("X-ClickHouse-Key") == self._password
        )

    def _answer(self, request: BaseHTTPRequestHandler) -> None:
        params = {name: values[-1] for name, values in parse_qs(urlsplit(request.path).query).items()}
        if not self._authenticated(request):
            answer = b"Code: 516. DB::Exception: default: Authentication failed: password is incorrect. (AUTHENTICATION_FAILED)"
            request.send_response(403)
            request.send_header("X-ClickHouse-Exception-Code", "516")
            request.send_header("Content-Length", str(len(answer)))
            request.end_headers()
            request.wfile.write(answer)
            return
        body = self._body(request)
        text = params.get("query", "")
        if not text:  # the statement is the body's first line, and any data follows it
            head, _, rest = body.partition(b"\n")
            text, body = (head.decode(), rest) if _INSERT.match(head) else (body.decode(), b"")
        try:
            bound = {name[len("param_") :]: value for name, value in params.items() if name.startswith("param_")}
            payload, fmt = self._run(text, body, bound, params.get("database"), params.get("default_format"))
        except Exception as exc:
            message = str(exc)
            code = _CODE.search(message)
            request.send_response(500)
            request.send_header("X-ClickHouse-Exception-Code", code.group(1) if code else "1")
            request.send_header("Content-Type", "text/plain; charset=UTF-8")
            answer = message.encode() if message.startswith("Code:") else f"Code: 1. DB::Exception: {message}".encode()
            request.send_header("Content-Length", str(len(answer)))
            request.end_headers()
            request.wfile.write(answer)
            return
        request.send_response(200)
        request.send_header("Content-Type", "application/octet-stream")
        request.send_header("X-ClickHouse-Format", fmt)
        request.send_header("X-ClickHouse-Query-Id", params.get("query_id") or str(uuid.uuid4()))
        request.send_header("X-ClickHouse-Timezone", "UTC")
        request.send_header("X-ClickHouse-Summary", '{"read_rows":"0","written_rows":"0"}')
        request.send_header("Content-Length", str(len(payload)))
        request.end_headers()
        request.wfile.write(payload)

    def _run(
        self, text: str, data: bytes, bound: dict[str, str], database: str | None, default_format: str | None
    ) -> tuple[bytes, str]:
        insert = _INSERT.match(text.encode())
        with self._lock:
            if database:
                self._conn.query(f"USE `{database}`")
            if insert and data:
                path = self._scratch / f"{uuid.uuid4().hex}.data"
                path.write_bytes(data)
                try:
                    statement = insert.group(1).decode()
                    infile = f"{statement} FROM INFILE '{path}' FORMAT {insert.group(2).decode()}"
                    self._conn.query(infile, "TabSeparated", params=bound)
                finally:
                    path.unlink()
                return b"", "TabSeparated"
            fmt_match = _TRAILING_FORMAT.search(text)
            fmt = fmt_match.group(1) if fmt_match else (default_format or "TabSeparated")
            sql = text[: fmt_match.start()] if fmt_match else text
            result = self._conn.query(sql, fmt, params=bound)
            return bytes(result.bytes()) if hasattr(result, "bytes") else bytes(result), fmt
