"""What every ``trackflow`` command needs: the settings, a wait for Ctrl-C, the mapping's failure settings."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from chalicelib.errors import TrackflowError
from chalicelib.settings import Settings, load_settings


class ReadAfterClose(logging.Filter):
    """Drops kafka-python's traceback for a socket read that lost a race with our own close.

    kafka-python 3.0.12 (the newest release) awaits a readable socket, and does not look again
    whether the transport was closed meanwhile: when a client is closed on shutdown just as a
    fetch answer arrives, ``_sock_recv`` calls ``None.recv`` and logs the AttributeError as an
    ERROR with its traceback. Nothing is lost (the transport was closed on purpose, by us), so
    only that record is dropped; every other error of the library is still shown.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (isinstance(error, AttributeError) and "'NoneType' object has no attribute 'recv'" in str(error))


_READ_AFTER_CLOSE = ReadAfterClose()


def configure_logging(verbose: bool) -> None:
    """One line per record; the Kafka client and urllib3 only say errors unless ``verbose``."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("kafka", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.ERROR)
    logging.getLogger("kafka.net.transport").addFilter(_READ_AFTER_CLOSE)  # once, however often called


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


@contextmanager
def counting(
    total: int, label: str, *, unit: str = "events", every_s: float = 5.0, err: bool = False
) -> Iterator[Callable[[int], None]]:
    """Progress of long work, with its rate: a bar on a terminal, a line every ``every_s`` in a log.

    Yields ``advance(n)``. click's bar draws nothing when the output is not a
    terminal (CI, ``| tee``), so there a counter line is printed instead.
    ``err`` shows it on standard error (when standard output carries data).
    """
    started = time.monotonic()
    done = [0]

    def rate() -> str:
        elapsed = time.monotonic() - started
        return f"{done[0] / elapsed:,.0f} {unit}/s" if elapsed > 0 else ""

    stream = sys.stderr if err else sys.stdout
    if stream.isatty():
        bar: Any
        with click.progressbar(
            length=total,
            label=label,
            show_pos=True,
            item_show_func=lambda _: rate() if done[0] else None,
            file=stream,
        ) as bar:

            def step(n: int) -> None:
                done[0] += n
                bar.update(n, done[0])

            yield step
        return
    click.echo(f"{label}: {total:,} {unit}", err=err)
    shown = [started]

    def line(n: int) -> None:
        done[0] += n
        if time.monotonic() - shown[0] >= every_s:
            shown[0] = time.monotonic()
            click.echo(f"  {done[0]:,} of {total:,} {unit} ({rate()})", err=err)

    yield line
