"""``trackflow dev``: the whole pipeline in one process, on embedded defaults.

chDB allows one engine per process, so the collect API (Chalice's local server),
the trigger runner, the rollup compactor and anything else that touches
ClickHouse share this process, each in a thread. The embedded broker is a child process, stopped on exit. The
tracker's ``dist/`` is served with CORS when it has been built.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from chalicelib import runtime
from chalicelib.settings import Settings
from chalicelib.storage.clickhouse import connect
from chalicelib.storage.migrations import migrate
from trackflow.broker import EmbeddedBroker
from trackflow.compactor import Compactor
from trackflow.kafka import ApacheKafka
from trackflow.mapping import MappingPolicy, destination_for, failure_topic
from trackflow.ports import Port, check_free
from trackflow.request_log import DASHBOARD_PATHS, PollLog, is_polling
from trackflow.runner import DEFAULT_BATCH_SIZE, DEFAULT_GROUP_ID, TriggerRunner
from trackflow.sqlgate import SqlGate
from trackflow.topics import DEFAULT_PARTITIONS, ensure_topics, topic_plan

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS_DIR = ROOT / "infra" / "clickhouse" / "migrations"
TRACKER_DIST = ROOT / "tracker" / "dist"
DEMO_DIR = ROOT / "tracker" / "demo"
DASHBOARD_PAGE = ROOT / "dashboard" / "dist" / "index.html"
DASHBOARD_ICON = ROOT / "dashboard" / "dist" / "favicon.svg"
DRAIN_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class DevOptions:
    host: str = "127.0.0.1"
    api_port: int = 8000
    tracker_port: int = 8080
    broker_port: int = 9092
    kafka: str = "embedded"  # or "apache": which broker to start when none is configured
    serve_tracker: bool = True
    batch_size: int = DEFAULT_BATCH_SIZE
    batching_window_s: float = 0.25
    partitions: int = DEFAULT_PARTITIONS
    group_id: str = DEFAULT_GROUP_ID  # the ingest consumer group (the mapping's, in AWS)
    # What the trigger does with a failing batch: the deployed mapping's settings (trackflow.mapping).
    policy: MappingPolicy = field(default_factory=MappingPolicy)


class _QuietHangUp:
    """A request handler that ends quietly when the client left before its answer was written (a
    reloaded dashboard or page, a closed tab): nothing went wrong here, so no traceback in the terminal."""

    close_connection: bool

    def handle(self) -> None:
        try:
            super().handle()  # type: ignore[misc]
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class _CorsStaticHandler(_QuietHangUp, SimpleHTTPRequestHandler):
    """tracker/dist with ``Access-Control-Allow-Origin: *`` (like ``http-server --cors``),
    and the demo site under ``/demo/``."""

    def translate_path(self, path: str) -> str:
        if path == "/demo" or path.startswith(("/demo/", "/demo?")):
            # SPA routes under /demo/app/... all render the demo's index page.
            rel = path[len("/demo") :].split("?", 1)[0].split("#", 1)[0].lstrip("/")
            target = (DEMO_DIR / rel).resolve()
            if not rel or rel.startswith("app/") or not target.is_file() or DEMO_DIR.resolve() not in target.parents:
                target = DEMO_DIR / "index.html"
            return str(target)
        return super().translate_path(path)

    def end_headers(self) -> None:
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("tracker server: " + format, *args)


def migrate_clickhouse(conf: Settings, *, cluster: str | None = None) -> list[str]:
    """Apply infra/clickhouse/migrations to the configured ClickHouse; return the names applied now."""
    return migrate(connect(conf.clickhouse), MIGRATIONS_DIR, database=conf.clickhouse.database, cluster=cluster)


def open_sql_gate(conf: Settings) -> SqlGate | None:
    """Read-only SQL for `trackflow sql` while this process holds the embedded engine; never in prod."""
    if not (conf.clickhouse.embedded and conf.stage in ("dev", "test")):
        return None
    reader = connect(conf.clickhouse, database=conf.clickhouse.database, read_only=True)
    return SqlGate(reader, data_dir=conf.data_dir).start()


def _serve(server: Any, name: str) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
    thread.start()
    return thread


def _chalice_server(host: str, port: int) -> Any:
    from chalice.config import Config
    from chalice.local import ChaliceRequestHandler, LocalChalice, LocalDevServer, create_local_server

    import app as app_module

    polls = PollLog()

    class Handler(_QuietHangUp, ChaliceRequestHandler):
        # http.server answers methods it has no do_X for with a 501 HTML page;
        # hand every method to the app, which answers 405 for those a route lacks.
        def __getattr__(self, name: str) -> Any:
            if name.startswith("do_"):
                return self._generic_handle
            raise AttributeError(name)

        def do_GET(self) -> None:
            # The dashboard page at / (and /dashboard) and its icon; everything else is the app's.
            path = self.path.split("?", 1)[0]
            if path in DASHBOARD_PATHS:
                self._page(DASHBOARD_PAGE, "text/html; charset=utf-8")
            elif path in ("/favicon.ico", "/favicon.svg"):
                self._page(DASHBOARD_ICON, "image/svg+xml")
            else:
                self._generic_handle()

        def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
            """What http.server refuses itself (a request line over 64 KB: 414) as the app's JSON error."""
            text = message or explain or HTTPStatus(code).phrase
            body = json.dumps({"error": {"code": f"http_{code}", "message": text}}).encode()
            self.close_connection = True
            self.send_response(code, message)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def log_request(self, code: Any = "-", size: Any = "-") -> None:
            if not (self.command == "GET" and is_polling(self.path)):
                super().log_request(code, size)
            elif line := polls.count(code if isinstance(code, int) else 0):
                self.log_message("%s", line)

        def _page(self, page: Path, kind: str) -> None:
            if page.is_file():
                status, body = 200, page.read_bytes()
            else:
                status, kind = 404, "text/plain; charset=utf-8"
                body = b"The dashboard is not built: run `make dashboard` (make dev builds it).\n"
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            self.wfile.write(body)

    config_file = ROOT / ".chalice" / "config.json"
    from_disk = json.loads(config_file.read_text()) if config_file.exists() else {}
    config = Config(chalice_stage="dev", config_from_disk=from_disk, user_provided_params={"project_dir": str(ROOT)})
    if isinstance(app_module.app, LocalChalice):
        # Already made local by an earlier server in this process: doing it twice
        # would make Chalice's class swap inherit from itself.
        return LocalDevServer(app_module.app, config, host, port, handler_cls=Handler)
    server = create_local_server(app_module.app, config, host, port)
    server.server.RequestHandlerClass = functools.partial(Handler, app_object=app_module.app, config=config)
    return server


class DevStack:
    """Everything ``trackflow dev`` runs; :meth:`start` then :meth:`stop` (or use ``with``)."""

    def __init__(
        self, settings: Settings, options: DevOptions, *, on_ready: Callable[[DevStack], None] | None = None
    ) -> None:
        self.settings = settings
        self.options = options
        self._on_ready = on_ready
        self._stack = ExitStack()
        self.broker: EmbeddedBroker | ApacheKafka | None = None
        self.runner: TriggerRunner | None = None
        self.compactor: Compactor | None = None
        self.bootstrap_servers = settings.bootstrap_servers
        self.tracker_served = False
        # The ports really bound: port 0 in the options means "any free one".
        self.api_port = options.api_port
        self.tracker_port = options.tracker_port

    @property
    def api_url(self) -> str:
        return f"http://{self.options.host}:{self.api_port}"

    def _ensure_topics(self) -> None:
        ensure_topics(
            self.bootstrap_servers,
            topic_plan(
                self.settings, partitions=self.options.partitions, failure_topic=failure_topic(self.options.policy)
            ),
            security=self.settings.kafka_security,
        )

    def start(self) -> DevStack:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        if self._on_ready is not None:
            self._on_ready(self)
        return self

    def _ports(self) -> list[Port]:
        """Every port this stack will open, with the option that moves it."""
        opts = self.options
        ports = [Port(opts.api_port, "the API and dashboard", "--port")]
        if opts.serve_tracker:
            ports.append(Port(opts.tracker_port, "tracker.js and the demo", "--tracker-port"))
        if self.settings.embedded_kafka:
            reuse = ", set KAFKA_BOOTSTRAP_SERVERS to use the broker there,"
            ports.append(Port(opts.broker_port, "the Kafka broker", "--broker-port", reuse))
            if opts.kafka == "apache" and opts.broker_port:
                ports.append(Port(opts.broker_port + 1, "Kafka's KRaft controller", "--broker-port"))
        return ports

    def _start(self) -> None:
        opts, conf = self.options, self.settings
        check_free(opts.host, self._ports())
        if conf.embedded_kafka:
            conf.data_dir.mkdir(parents=True, exist_ok=True)
            if opts.kafka == "apache":
                self.broker = ApacheKafka(conf.data_dir / "kafka", host=opts.host, port=opts.broker_port).start()
            else:
                log_path = conf.data_dir / "broker.log"
                self.broker = EmbeddedBroker(host=opts.host, port=opts.broker_port, log_path=log_path).start()
            self._stack.callback(self.broker.stop)
            self.bootstrap_servers = self.broker.bootstrap_servers
            conf = self.settings = _with_bootstrap(conf, self.bootstrap_servers)
        self._ensure_topics()
        applied = migrate_clickhouse(conf)
        if applied:
            logger.info("applied migrations: %s", ", ".join(applied))
        gate = open_sql_gate(conf)
        if gate is not None:
            self._stack.callback(gate.stop)

        runtime.reset()
        runtime.configure(settings=conf)
        self._stack.callback(runtime.reset)
        self._stack.callback(lambda: runtime.sender().close())

        import app as app_module

        destination = destination_for(
            opts.policy,
            bootstrap_servers=self.bootstrap_servers,
            security=conf.kafka_security,
            mapping_id=opts.group_id,
        )
        if destination is not None:
            self._stack.callback(destination.close)
        self.runner = TriggerRunner(
            app_module.ingest,
            bootstrap_servers=self.bootstrap_servers,
            topic=conf.events_topic,
            group_id=opts.group_id,
            batch_size=opts.batch_size,
            batching_window_s=opts.batching_window_s,
            on_consumer_error=self._ensure_topics,
            security=conf.kafka_security,
            lag_from_end_offsets=not isinstance(self.broker, EmbeddedBroker),
            policy=opts.policy,
            destination=destination,
        )
        runner_thread = self.runner.start_thread()
        self._stack.callback(runner_thread.join, 10)
        self._stack.callback(self.runner.stop)

        self.compactor = Compactor(
            runtime.rollup_client(),
            interval_s=conf.rollup_interval_s,
            settle_s=conf.rollup_settle_s,
            replica_lag_s=conf.clickhouse.replica_lag_s,
            after_round=runtime.expire_if_due,
        )
        compactor_thread = self.compactor.start_thread()
        self._stack.callback(compactor_thread.join, 30)
        self._stack.callback(self.compactor.stop)

        api = _chalice_server(opts.host, opts.api_port)
        self.api_port = api.server.server_address[1]
        _serve(api.server, "api-server")
        self._stack.callback(api.server.server_close)
        self._stack.callback(api.shutdown)

        if opts.serve_tracker and TRACKER_DIST.is_dir():
            handler = functools.partial(_CorsStaticHandler, directory=str(TRACKER_DIST))
            static = ThreadingHTTPServer((opts.host, opts.tracker_port), handler)
            self.tracker_port = static.server_address[1]
            _serve(static, "tracker-server")
            self._stack.callback(static.server_close)
            self._stack.callback(static.shutdown)
            self.tracker_served = True

    def stop(self, *, drain_s: float = DRAIN_TIMEOUT_S, progress: Callable[[str], None] | None = None) -> bool:
        """Stop taking events, ingest what the broker acknowledged (at most ``drain_s``), then stop everything.

        The embedded broker keeps nothing: without the drain, events answered
        202 just before Ctrl-C would be lost with it. Returns False when the
        drain timed out.
        """
        drained = True
        if self.runner is not None and drain_s > 0:
            runtime.set_draining(True)
            drained = self.runner.drain(drain_s, progress=progress)
            if not drained:
                logger.warning("stopped before ingesting everything the broker held (%g s passed)", drain_s)
        self._stack.close()
        return drained

    def __enter__(self) -> DevStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _with_bootstrap(settings: Settings, bootstrap: str) -> Settings:
    from dataclasses import replace

    return replace(settings, kafka_bootstrap_servers=bootstrap)


def banner(stack: DevStack) -> str:
    """What `trackflow dev` prints once everything listens."""
    conf = stack.settings
    api = stack.api_url
    clickhouse = conf.clickhouse.location
    if isinstance(stack.broker, ApacheKafka):
        broker = f"Apache Kafka on {stack.bootstrap_servers} (data in {stack.broker.home})"
    elif stack.broker is not None:
        broker = f"embedded Tansu on {stack.bootstrap_servers}"
    else:
        broker = stack.bootstrap_servers
    tracker = (
        f"http://localhost:{stack.tracker_port}/tracker.js   demo site: http://localhost:{stack.tracker_port}/demo/"
        if stack.tracker_served
        else "not served (build it with `make tracker`)"
    )
    curl = (
        f"curl -s -X POST {api}/v1/collect -H 'Content-Type: text/plain' \\\n"
        '    -d \'{"api_key":"YOUR_API_KEY","events":[{"event_id":"\'$(python3 -c "import uuid;print(uuid.uuid4())")\'",'
        '"type":"pageView","ts":\'$(date +%s000)\',"props":{"title":"Hello"},'
        '"context":{"url":"http://localhost/hello?utm_source=readme","anonymous_id":"visitor-1"}}]}\''
    )
    return "\n".join(
        [
            "TrackFlow dev is running. Ctrl-C stops everything.",
            f"  dashboard     {api}/   (stats API: {api}/v1/stats/overview, metrics: {api}/metrics)",
            f"  collect API   {api}/v1/collect   (health: {api}/health)",
            f"  tracker.js    {tracker}",
            f"  Kafka         {broker}   topics {conf.events_topic}, {conf.dlq_topic}",
            f"  ClickHouse    {clickhouse}   database {conf.clickhouse.database}",
            "",
            "Send an event:",
            f"  {curl}",
            "See it (in another terminal, while this runs):",
            '  .venv/bin/trackflow sql "SELECT timestamp, type, url_path, utm_source FROM events FINAL ORDER BY timestamp DESC LIMIT 5"',
            "Make some traffic for the dashboard:",
            "  .venv/bin/trackflow load --events 50000 --days 30",
        ]
    )
