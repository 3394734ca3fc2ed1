"""Several Apache Kafka brokers on this machine: ``trackflow kafka --brokers 3``.

As on MSK, the controller quorum runs apart from the brokers: one
controller-only node (``<home>/controller``, on ``port + 1``) and ``brokers``
broker-only nodes (``<home>/broker-N``, on ``port``, ``port + 2``, ``port + 4``:
9092, 9094, 9096 by default), each an :class:`~trackflow.kafka.ApacheKafka`
formatted with one cluster id (kept in ``<home>/cluster.id``), so a restart
finds the same cluster. They share the jars. With the controller apart, losing
brokers never loses the quorum: the controller moves leaders and shrinks the
in-sync replicas, as MSK's does.

The cluster takes MSK's defaults: no automatic topic creation, three copies
of each partition (the brokers' count when fewer), two of them in sync before
a write is acknowledged, and no unclean leader election. So losing one broker
of three loses nothing and stops writes only while leaders move (the
controller notices a dead broker within its session timeout, 9 s); losing two
refuses every write with ``NOT_ENOUGH_REPLICAS`` until one comes back.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Self

from trackflow.kafka import DEFAULT_HEAP, ApacheKafka

CLUSTER_HEAP = "384m"  # three JVMs on a small machine


class KafkaCluster:
    """``brokers`` Apache Kafka nodes on ``host``, state in ``home``; start, stop, kill and restart each."""

    CONTROLLER_ID = 100

    def __init__(
        self, home: Path, *, brokers: int = 3, host: str = "127.0.0.1", port: int = 9092, heap: str | None = None
    ) -> None:
        if brokers < 1:
            raise ValueError("a cluster has at least one broker")
        self.home = home
        self.host = host
        self.controller_port = port + 1
        self.replication = min(3, brokers)
        self.heap = heap or (DEFAULT_HEAP if brokers == 1 else CLUSTER_HEAP)
        self.controller = self._node("controller", self.controller_port, self.CONTROLLER_ID, "controller")
        self.nodes = [self._node(f"broker-{n}", port + 2 * (n - 1), n, "broker") for n in range(1, brokers + 1)]

    def _node(self, name: str, port: int, node_id: int, roles: str) -> ApacheKafka:
        return ApacheKafka(
            self.home / name,
            host=self.host,
            port=port,
            controller_port=self.controller_port,
            heap=self.heap,
            node_id=node_id,
            roles=roles,
            voters=f"{self.CONTROLLER_ID}@{self.host}:{self.controller_port}",
            cluster_id=self._cluster_id(),
            replication=self.replication,
            lib=self.home / "lib",
        )

    def _cluster_id(self) -> str:
        path = self.home / "cluster.id"
        if not path.exists():
            self.home.mkdir(parents=True, exist_ok=True)
            path.write_text(uuid.uuid4().hex[:22])
        return path.read_text().strip()

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(node.bootstrap_servers for node in self.nodes)

    def start(self) -> Self:
        """Launch the controller and every broker, then wait for each: brokers serve once they reach the quorum."""
        self.controller.jars()  # resolved once, before several JVMs want them
        launched: list[ApacheKafka] = []
        try:
            for node in (self.controller, *self.nodes):
                launched.append(node.launch())
            for node in launched:
                node.wait_ready()
        except Exception:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for node in (*self.nodes, self.controller):
            node.stop()

    def kill(self, index: int) -> None:
        """SIGKILL one broker (0-based), as a crash would."""
        self.nodes[index].stop(kill=True)

    def restart(self, index: int) -> None:
        self.nodes[index].start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
