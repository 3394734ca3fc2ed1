"""Ports checked before anything starts: a busy one is named, with who holds it and the way out.

Binding fails only after the broker has started and the topics exist, and then
as a bare ``[Errno 98] Address already in use``. :func:`check_free` tries each
port first, and says which process holds it (psutil) and which option moves it.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from chalicelib.errors import TrackflowError


class PortInUseError(TrackflowError):
    """A port a command needs is taken."""


@dataclass(frozen=True)
class Port:
    number: int
    what: str  # "the API", "the tracker server", ...
    option: str  # the option that changes it: "--port"
    hint: str = ""  # another way out, said after the option


def holder(port: int) -> str | None:
    """``pid N (name)`` of the process listening on ``port``, when this user may see it."""
    try:
        import psutil

        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                return f"pid {conn.pid} ({psutil.Process(conn.pid).name()})"
    except Exception:  # not installed, not allowed, or the process just went: the port is still named
        return None
    return None


def is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def check_free(host: str, ports: list[Port]) -> None:
    """Raise :class:`PortInUseError` naming every busy port (port 0, "any free one", is never busy)."""
    busy = []
    for port in ports:
        if port.number and not is_free(host, port.number):
            by = holder(port.number)
            busy.append(
                f"port {port.number} ({port.what}) is in use{f' by {by}' if by else ''}; "
                f"use {port.option}{port.hint} or stop it"
            )
    if busy:
        raise PortInUseError("\n".join(busy))
