"""The rollup compactor of the local tooling: :func:`chalicelib.rollups.compaction.compact` every few seconds.

In AWS the scheduled ``compact`` Lambda does this; locally `trackflow dev` and
`trackflow trigger` run it in a thread beside the trigger runner. Reports are
exact without it (days not yet compacted are read from raw events); it only
makes them fast.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from chalicelib import metrics
from chalicelib.rollups.compaction import backlog, compact_all

logger = logging.getLogger(__name__)


class Compactor:
    """Runs compaction on ``client`` every ``interval_s`` until :meth:`stop`, then ``after_round``
    (retention's schedule: a no-op unless a run is due)."""

    def __init__(
        self,
        client: Any,
        *,
        interval_s: float,
        settle_s: float,
        replica_lag_s: float = 0.0,
        after_round: Callable[[], object] | None = None,
    ) -> None:
        self._client = client
        self._after_round = after_round
        self._replica_lag_s = replica_lag_s
        self._interval_s = interval_s
        self._settle_s = settle_s
        self._stop = threading.Event()
        self.hours_compacted = 0
        self.last_error: str | None = None

    def run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                started = time.monotonic()
                done = compact_all(self._client, settle_s=self._settle_s, replica_lag_s=self._replica_lag_s)
                self.hours_compacted += done.hours
                metrics.record_compaction(
                    done.hours, time.monotonic() - started, backlog(self._client, settle_s=self._settle_s)
                )
                if self._after_round is not None:
                    self._after_round()
                self.last_error = None
            except Exception as exc:  # ClickHouse busy or down: the next round tries again
                self.last_error = f"{exc.__class__.__name__}: {exc}"
                logger.warning("rollup compaction failed, will retry: %s", self.last_error)

    def stop(self) -> None:
        self._stop.set()

    def start_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="rollup-compactor", daemon=True)
        thread.start()
        return thread
