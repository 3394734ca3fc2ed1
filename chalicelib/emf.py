"""CloudWatch metrics from Lambda, as one Embedded Metric Format (EMF) log line per invocation.

In Lambda a ``/metrics`` endpoint means nothing: every instance has its own
registry, and ``ingest`` has no route. CloudWatch Logs turns a JSON log line
with an ``_aws`` block into metrics, so what an invocation measured is
gathered here (:meth:`EmfWriter.add`) and printed as a single line when it
ends (:meth:`EmfWriter.flush`), under the same names as ``/metrics``
(``trackflow_*``), in the ``TrackFlow`` namespace, with the function's name
(and, for requests, route and status) as dimensions.

One line, not one per measurement: CloudWatch Logs bills every byte it
ingests, and a line per measurement cost more than collect's own compute.
Counts added twice in an invocation are summed; other values (seconds) are
kept as a list, which EMF reads as several samples. A metric's dimensions are
those of its first measurement in the invocation.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Mapping
from typing import IO, Any

import orjson

NAMESPACE = "TrackFlow"


def _compact(samples: list[float]) -> float | list[float]:
    """One value, or the samples; to 10 µs, which is finer than CloudWatch shows and shorter to log."""
    rounded = [round(value, 5) for value in samples]
    return rounded[0] if len(rounded) == 1 else rounded


class EmfWriter:
    """Gathers one invocation's metrics for ``function`` and prints them as one EMF line on ``flush``."""

    def __init__(self, function: str, *, stream: IO[str] | None = None, namespace: str = NAMESPACE) -> None:
        self._function = function
        self._stream = stream
        self._namespace = namespace
        self._lock = threading.Lock()
        self._labels: dict[str, str] = {}
        self._metrics: dict[str, tuple[tuple[str, ...], str, list[float]]] = {}
        self._properties: dict[str, Any] = {}

    def add(self, values: Mapping[str, tuple[float, str]], dimensions: Mapping[str, str] | None = None) -> None:
        """Measurements (name -> (value, unit)) sharing ``dimensions``, for this invocation's line."""
        with self._lock:
            dims = dict(dimensions or {})
            if any(self._labels.get(key, value) != value for key, value in dims.items()):
                dims = {}  # another value of a dimension this line already has: count it under the function only
            self._labels.update(dims)
            for name, (value, unit) in values.items():
                _, kept_unit, samples = self._metrics.setdefault(name, (tuple(sorted(dims)), unit, []))
                if kept_unit == "Count" and samples:
                    samples[0] += value
                else:
                    samples.append(value)

    def note(self, name: str, value: Any) -> None:
        """A property on the line that is not a metric (searchable with Logs Insights)."""
        with self._lock:
            self._properties[name] = value

    def flush(self) -> None:
        """Print what was gathered as one line (nothing when nothing was), and start afresh."""
        with self._lock:
            metrics, labels, properties = self._metrics, self._labels, self._properties
            self._metrics, self._labels, self._properties = {}, {}, {}
        if not metrics:
            return
        groups: dict[tuple[str, ...], list[dict[str, str]]] = {}
        for name, (group, unit, _) in metrics.items():
            # A count's unit is CloudWatch's default ("None"): left out, one line is shorter.
            groups.setdefault(group, []).append({"Name": name} if unit == "Count" else {"Name": name, "Unit": unit})
        document: dict[str, Any] = {
            "_aws": {
                "Timestamp": int(time.time() * 1000),
                "CloudWatchMetrics": [
                    {"Namespace": self._namespace, "Dimensions": [["function", *group]], "Metrics": declared}
                    for group, declared in groups.items()
                ],
            },
            "function": self._function,
            **labels,
            **properties,
            **{name: _compact(samples) for name, (_, _, samples) in metrics.items()},
        }
        stream = self._stream or sys.stdout
        stream.write(orjson.dumps(document).decode() + "\n")
        stream.flush()
