"""CloudWatch metrics from Lambda, as Embedded Metric Format (EMF) log lines.

In Lambda a ``/metrics`` endpoint means nothing: every instance has its own
registry, and ``ingest`` has no route. CloudWatch Logs turns a JSON log line
with an ``_aws`` block into metrics, so each measurement is printed as one
such line, under the same names as ``/metrics`` (``trackflow_*``), in the
``TrackFlow`` namespace, with the function's name and the metric's labels as
dimensions. Nothing waits on a network call and nothing is lost when an
instance is frozen between invocations: the line is in the log already.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import IO

import orjson

NAMESPACE = "TrackFlow"


class EmfWriter:
    """Prints EMF lines for one function to ``stream`` (stdout, which Lambda sends to CloudWatch Logs)."""

    def __init__(self, function: str, *, stream: IO[str] | None = None, namespace: str = NAMESPACE) -> None:
        self._function = function
        self._stream = stream
        self._namespace = namespace

    def emit(self, values: Mapping[str, tuple[float, str]], dimensions: Mapping[str, str] | None = None) -> None:
        """One line: ``values`` maps metric name to (value, unit), all sharing ``dimensions``."""
        labels = {"function": self._function, **(dimensions or {})}
        document: dict[str, object] = {
            "_aws": {
                "Timestamp": int(time.time() * 1000),
                "CloudWatchMetrics": [
                    {
                        "Namespace": self._namespace,
                        "Dimensions": [list(labels)],
                        "Metrics": [{"Name": name, "Unit": unit} for name, (_, unit) in values.items()],
                    }
                ],
            },
            **labels,
            **{name: value for name, (value, _) in values.items()},
        }
        stream = self._stream or sys.stdout
        stream.write(orjson.dumps(document).decode() + "\n")
        stream.flush()
