"""Apache Kafka from Maven Central, run without Docker: ``trackflow kafka``.

The broker's jars are resolved once with Maven from ``infra/kafka/pom.xml``
(the version pinned there equals the ``apache/kafka`` image in
``infra/docker-compose.yml``) into ``<data dir>/kafka/lib``. The storage under
``<data dir>/kafka/data`` is formatted once (KRaft, a single node that is broker
and controller) and kept: a second start finds its topics, messages and
committed offsets again. The JVM gets a bounded heap and dies with its parent.

With ``sasl_port`` it also opens a ``SASL_SSL`` listener there: TLS with a
throwaway CA and broker certificate (:mod:`trackflow.tls`, in ``<home>/tls``)
and SCRAM-SHA-512 for one user, ``trackflow``, whose random password is made
once and kept in ``<home>/tls/credentials.json`` (0600). The user is created
when the storage is formatted, or through the admin API when the storage
predates the listener. The plain listener stays for the broker itself.

Needs ``java`` (17+) and ``mvn`` on the PATH; :func:`missing_tools` says which
are absent, in words a person can act on.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from trackflow.broker import BrokerError, LocalBroker, _die_with_parent, port_open

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
POM = ROOT / "infra" / "kafka" / "pom.xml"
START_TIMEOUT_S = 90.0
DEFAULT_HEAP = "512m"
SCRAM_USER = "trackflow"
SCRAM_MECHANISM = "SCRAM-SHA-512"


@dataclass(frozen=True)
class SecureListener:
    """How a client reaches the SASL_SSL listener: what KAFKA_* settings to use."""

    bootstrap_servers: str
    ca_file: Path
    username: str
    password: str

    def env(self) -> dict[str, str]:
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": SCRAM_MECHANISM,
            "KAFKA_SSL_CA_FILE": str(self.ca_file),
            "KAFKA_SASL_USERNAME": self.username,
            "KAFKA_SASL_PASSWORD": self.password,
        }


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


class ApacheKafka(LocalBroker):
    """A single-node Apache Kafka (KRaft) on ``host:port`` with its state in ``home``."""

    STOP_WAIT_S = 30.0  # a clean shutdown flushes the log and the committed offsets

    def __init__(
        self,
        home: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 9092,
        controller_port: int | None = None,
        heap: str = DEFAULT_HEAP,
        sasl_port: int | None = None,
        node_id: int = 1,
        roles: str = "broker,controller",
        voters: str | None = None,
        cluster_id: str | None = None,
        replication: int = 1,
        lib: Path | None = None,
    ) -> None:
        super().__init__(host, port)
        self.home = home
        self.controller_port = controller_port or port + 1
        self.heap = heap
        self.sasl_port = sasl_port
        self.secure: SecureListener | None = None
        # One node of a cluster (trackflow.kafka_cluster): its id, the controller quorum, the shared
        # cluster id, and how many copies of each partition the cluster keeps.
        self.node_id = node_id
        self.roles = roles  # "broker,controller" (one node), or "broker" / "controller" in a cluster
        self.voters = voters or f"{node_id}@{host}:{self.controller_port}"
        self.cluster_id = cluster_id
        self.replication = replication
        self.lib = lib or home / "lib"
        self._formatted_now = False

    @property
    def log_path(self) -> Path:
        return self.home / "broker.log"

    # -- set-up ------------------------------------------------------------------------------------------------------
    def jars(self) -> Path:
        """The broker's jars, resolved from Maven Central the first time (about 45 MB)."""
        lib = self.lib
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

    def _secure_listener(self) -> SecureListener:
        """TLS files and the SCRAM user's credentials, made the first time."""
        from trackflow.tls import ensure_tls

        directory = self.home / "tls"
        tls = ensure_tls(directory, hosts=("localhost", self.host))
        keystore = directory / "keystore.pem"  # Kafka's PEM keystore: the key, then the chain
        fd = os.open(keystore, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(tls.server_key.read_bytes() + tls.server_cert.read_bytes())
        credentials = directory / "credentials.json"
        if not credentials.exists():
            fd = os.open(credentials, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                json.dump({"username": SCRAM_USER, "password": secrets.token_urlsafe(18)}, out)
        saved = json.loads(credentials.read_text())
        return SecureListener(f"{self.host}:{self.sasl_port}", tls.ca, saved["username"], saved["password"])

    def _properties(self) -> Path:
        controller = self.controller_port
        data = self.home / "data"
        listeners = f"PLAINTEXT://{self.host}:{self.port}"
        advertised = listeners
        protocols = "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
        secure: dict[str, str] = {}
        if self.sasl_port is not None:
            listeners += f",SASL_SSL://{self.host}:{self.sasl_port}"
            advertised += f",SASL_SSL://{self.host}:{self.sasl_port}"
            protocols += ",SASL_SSL:SASL_SSL"
            prefix = "listener.name.sasl_ssl."
            secure = {
                "sasl.enabled.mechanisms": SCRAM_MECHANISM,
                f"{prefix}sasl.enabled.mechanisms": SCRAM_MECHANISM,
                f"{prefix}scram-sha-512.sasl.jaas.config": (
                    "org.apache.kafka.common.security.scram.ScramLoginModule required;"
                ),
                f"{prefix}ssl.keystore.type": "PEM",
                f"{prefix}ssl.keystore.location": str(self.home / "tls" / "keystore.pem"),
            }
        copies, in_sync = str(self.replication), str(min(2, self.replication))
        lines = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": self.voters,
            "listeners": f"{listeners},CONTROLLER://{self.host}:{controller}",
            "advertised.listeners": advertised,
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": protocols,
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(data),
            "num.partitions": "1",
            "offsets.topic.replication.factor": copies,
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": copies,
            "transaction.state.log.min.isr": in_sync,
            "share.coordinator.state.topic.replication.factor": copies,
            "share.coordinator.state.topic.min.isr": in_sync,
            "group.initial.rebalance.delay.ms": "0",
            # MSK's defaults (three brokers: three copies, two in sync to acknowledge; one broker: one)
            "auto.create.topics.enable": "false",
            "default.replication.factor": copies,
            "min.insync.replicas": in_sync,
            "unclean.leader.election.enable": "false",
            **secure,
        }
        lines["process.roles"] = self.roles
        if self.roles == "broker":  # the quorum runs elsewhere: this node only serves clients
            lines["listeners"] = listeners
        elif self.roles == "controller":  # no client listener at all
            lines["listeners"] = f"CONTROLLER://{self.host}:{controller}"
            for key in ("advertised.listeners", "inter.broker.listener.name"):
                del lines[key]
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

    def _format(self, lib: Path, properties: Path) -> bool:
        """Format the KRaft storage once (with the SCRAM user, if any); later starts reuse it. True if formatted now."""
        if (self.home / "data" / "meta.properties").exists():
            return False
        cluster_id = self.cluster_id or uuid.uuid4().hex[:22]
        scram = []
        if self.secure is not None:
            scram = ["--add-scram", f"{SCRAM_MECHANISM}=[name={self.secure.username},password={self.secure.password}]"]
        result = subprocess.run(
            self._java(lib, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(properties), *scram),
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise BrokerError(f"formatting Kafka's storage failed:\n{(result.stdout + result.stderr)[-2000:]}")
        return True

    def _upsert_scram_user(self) -> None:
        """Create (or reset) the SCRAM user through the admin API, over the plain listener."""
        from confluent_kafka.admin import AdminClient, ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion

        assert self.secure is not None
        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers})
        upsert = UserScramCredentialUpsertion(
            self.secure.username,
            ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192),
            self.secure.password.encode(),
        )
        for future in admin.alter_user_scram_credentials([upsert]).values():
            future.result(timeout=30)

    # -- running -----------------------------------------------------------------------------------------------------
    def start(self) -> Self:
        return self.launch().wait_ready()

    def launch(self) -> Self:
        """Start the JVM and return at once; :meth:`wait_ready` waits for its listener (a cluster launches all first)."""
        self._refuse_busy_port()
        self.home.mkdir(parents=True, exist_ok=True)
        lib = self.jars()
        if self.sasl_port is not None:
            if port_open(self.host, self.sasl_port):
                raise BrokerError(f"port {self.sasl_port} on {self.host} (the SASL_SSL listener) is already in use")
            self.secure = self._secure_listener()
        properties = self._properties()
        formatted = self._format(lib, properties)
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
        self._formatted_now = formatted
        return self

    def wait_ready(self) -> Self:
        """Wait until the broker (and its SASL_SSL listener) accepts connections; BrokerError after the timeout."""
        assert self._proc is not None, "launch() first"
        formatted = self._formatted_now
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
        if self.secure is not None:
            while not port_open(self.host, self.sasl_port or 0):
                if time.monotonic() > deadline:
                    self.stop()
                    raise BrokerError(f"the SASL_SSL listener did not open on port {self.sasl_port}")
                time.sleep(0.1)
            if not formatted:
                self._upsert_scram_user()
        logger.info("Apache Kafka (pid %d) listening on %s", self._proc.pid, self.bootstrap_servers)
        return self
