"""What every ``trackflow`` command needs: the settings, a wait for Ctrl-C, the mapping's failure settings."""

from __future__ import annotations

import signal
import threading
from typing import Any

import click

from chalicelib.errors import TrackflowError
from chalicelib.settings import Settings, load_settings


def current_settings() -> Settings:
    """The settings, or a usage error naming the variable to fix."""
    try:
        return load_settings()
    except TrackflowError as exc:
        raise click.ClickException(exc.message) from None


def wait_for_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass


def mapping_policy() -> Any:
    """The mapping's failure settings from TRACKFLOW_* (trackflow.mapping), or a usage error naming the variable."""
    from trackflow.mapping import ConfigurationError, MappingPolicy

    try:
        return MappingPolicy.from_env()
    except ConfigurationError as exc:
        raise click.UsageError(str(exc)) from None


def describe_policy(policy: Any) -> str:
    if policy.retries is None:
        return "retried until it succeeds (no on-failure destination)"
    bisect = ", split in halves first" if policy.bisect else ""
    return f"retried {policy.retries} times{bisect}, then sent to {policy.on_failure}"
