"""Apache Kafka from Maven Central, run without Docker: ``trackflow kafka``.

The broker's jars are resolved once with Maven from ``infra/kafka/pom.xml``
(the version pinned there equals the ``apache/kafka`` image in
``infra/docker-compose.yml``) into ``<data dir>/kafka/lib``. The storage under
``<data dir>/kafka/data`` is formatted once (KRaft, a single node that is broker
and controller) and kept: a second start finds its topics, messages and
committed offsets again. The JVM gets a bounded heap and dies with its parent.

Needs ``java`` (17+) and ``mvn`` on the PATH; :func:`missing_tools` says which
are absent, in words a person can act on.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

from trackflow.broker import BrokerError, _die_with_parent, port_open

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
POM = ROOT / "infra" / "kafka" / "pom.xml"
START_TIMEOUT_S = 90.0
DEFAULT_HEAP = "512m"


def missing_tools() -> list[str]:
    """What must be installed before Apache Kafka can run here (empty when nothing)."""
    return [
        f"{tool} ({why})"
        for tool, why in (
            ("java", "Java 17 or newer: apt-get install openjdk-17-jre-headless"),
            ("mvn", "Maven: apt-get install maven"),
        )
        if shutil.which(tool) is None
    ]


def _pom_version() -> str:
    text = POM.read_text()
    return text.split("<kafka.version>", 1)[1].split("</kafka.version>", 1)[0].strip()


class ApacheKafka:
    """A single-node Apache Kafka (KRaft) on ``host:port`` with its state in ``home``."""

    def __init__(
        self,
        home: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 9092,
        controller_port: int | None = None,
        heap: str = DEFAULT_HEAP,
    ) -> None:
        self.home = home
        self.host = host
        self.port = port
        self.controller_port = controller_port or port + 1
        self.heap = heap
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def log_path(self) -> Path:
        return self.home / "broker.log"

    # -- set-up ------------------------------------------------------------------------------------------------------
    def jars(self) -> Path:
        """The broker's jars, resolved from Maven Central the first time (about 45 MB)."""
        lib = self.home / "lib"
        marker = lib / f".resolved-{_pom_version()}"
        if marker.exists():
            return lib
        missing = missing_tools()
        if missing:
            raise BrokerError("Apache Kafka needs " + " and ".join(missing))
        logger.info("resolving Apache Kafka %s from Maven Central into %s (once)", _pom_version(), lib)
        if lib.exists():
            shutil.rmtree(lib)
        result = subprocess.run(
            [
                "mvn",
                "-q",
                "-B",
                "-f",
                str(POM),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={lib}",
                "-DincludeScope=runtime",
            ],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise BrokerError(f"Maven could not resolve Apache Kafka:\n{(result.stdout + result.stderr)[-2000:]}")
        marker.touch()
        return lib

    def _properties(self) -> Path:
        controller = self.controller_port
        data = self.home / "data"
        lines = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{self.host}:{controller}",
            "listeners": f"PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{controller}",
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(data),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
        }
        path = self.home / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
        return path

    def _java(self, lib: Path, main: str, *args: str) -> list[str]:
        return [
            "java",
            f"-Xmx{self.heap}",
            "-Xms128m",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={self.home}",
            "-cp",
            f"{lib}/*",
            main,
            *args,
        ]

    def _format(self, lib: Path, properties: Path) -> None:
        """Format the KRaft storage once; later starts reuse it."""
        if (self.home / "data" / "meta.properties").exists():
            return
        cluster_id = uuid.uuid4().hex[:22]
        result = subprocess.run(
            self._java(lib, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(properties)),
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise BrokerError(f"formatting Kafka's storage failed:\n{(result.stdout + result.stderr)[-2000:]}")

    # -- running -----------------------------------------------------------------------------------------------------
    def start(self) -> ApacheKafka:
        if port_open(self.host, self.port):
            raise BrokerError(
                f"port {self.port} on {self.host} is already in use. If a Kafka broker runs there, "
                f"set KAFKA_BOOTSTRAP_SERVERS={self.host}:{self.port} to use it; otherwise stop what holds the port."
            )
        self.home.mkdir(parents=True, exist_ok=True)
        lib = self.jars()
        properties = self._properties()
        self._format(lib, properties)
        with open(self.log_path, "ab") as out:
            self._proc = subprocess.Popen(
                self._java(lib, "kafka.Kafka", str(properties)),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent,
                env=os.environ | {"KAFKA_HEAP_OPTS": f"-Xmx{self.heap}"},
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not port_open(self.host, self.port):
            if self._proc.poll() is not None:
                raise BrokerError(f"Apache Kafka exited with code {self._proc.returncode}; see {self.log_path}")
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerError(
                    f"Apache Kafka did not listen on {self.bootstrap_servers} within {START_TIMEOUT_S:.0f} s"
                )
            time.sleep(0.1)
        logger.info("Apache Kafka (pid %d) listening on %s", self._proc.pid, self.bootstrap_servers)
        return self

    def stop(self, *, kill: bool = False) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        if kill:
            proc.kill()
        else:
            proc.terminate()  # a clean shutdown flushes the log and the committed offsets
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def __enter__(self) -> ApacheKafka:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
