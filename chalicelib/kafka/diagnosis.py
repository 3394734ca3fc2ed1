"""Why a librdkafka client cannot talk to the cluster, in words that say what to fix.

librdkafka does not fail a call when the cluster refuses it: it reports the
reason to its error callback or only to its log, retries, and lets the call
time out. :class:`ClientErrors` listens to both (``config()`` goes into the
client's settings; callbacks arrive during ``poll``/``flush``) and
:meth:`ClientErrors.reason` names the most telling failure seen: refused
credentials, a failed TLS handshake, or a plain-text client closed on by a TLS
listener. Each new reason is logged once.

:func:`replica_shortfall` reads what the client cannot report at all: with
``acks=all`` a partition whose in-sync replicas fell below the topic's
``min.insync.replicas`` refuses writes with ``NOT_ENOUGH_REPLICAS``, which
librdkafka retries quietly until the message times out. The topic's metadata
(leader and in-sync replicas per partition) says so in words.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

from chalicelib.kafka.security import KafkaSecurity

logger = logging.getLogger(__name__)

# "FAIL [rdkafka#producer-1] [thrd:sasl_ssl://h:9094/bootstrap]: sasl_ssl://h:9094/bootstrap: <what>
# (after 324ms in state AUTH_REQ)" -> "<what>": the same failure reads the same from the log and the callback.
_PREFIX = re.compile(r"^.*\w+://[^\s:]+:\d+/\w+: ")
_TIMING = re.compile(r" \(after \d+ms in state \w+\)")
_last_logged: list[str] = [""]  # across clients: a refused password is logged once, not per retry


class _Collector(logging.Handler):
    def __init__(self, sink: ClientErrors) -> None:
        super().__init__()
        self._sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self._sink.saw(record.getMessage(), logged=True)


class ClientErrors:
    """The failures one librdkafka client reported, and the reason they add up to."""

    def __init__(self, security: KafkaSecurity, *, log: bool = True) -> None:
        self._security = security
        self._log = log  # False: the caller reports the reason itself (``trackflow doctor``)
        self._lock = threading.Lock()
        self._reason: str | None = None
        # Not logging.getLogger: one per client, never registered (nothing to leak).
        self._logger = logging.Logger("trackflow.librdkafka")
        self._logger.addHandler(_Collector(self))

    def config(self) -> dict[str, Any]:
        """The client settings that route its errors and log lines here."""
        return {"error_cb": self.on_error, "logger": self._logger}

    def on_error(self, error: Any) -> None:
        self.saw(error.str() if hasattr(error, "str") else str(error))

    def saw(self, text: str, *, logged: bool = False) -> None:
        """One report: from the error callback, or (``logged``) a log line, of which only failures count."""
        reason = self._explain(text, logged)
        if reason is None:
            return
        with self._lock:
            self._reason = reason
            if not self._log:
                return
            new = reason != _last_logged[0]
            _last_logged[0] = reason
        if new:
            logger.error("Kafka: %s", reason)

    def reason(self) -> str | None:
        with self._lock:
            return self._reason

    def _explain(self, text: str, logged: bool) -> str | None:
        detail = _TIMING.sub("", _PREFIX.sub("", text))
        if "SASL authentication error" in text or "Authentication failed" in text:
            return f"authentication failed ({self._security.describe()}): {detail}"
        if "SSL handshake failed" in text:
            return f"TLS handshake failed: {detail}"
        if "APIVERSION_QUERY" in text and "Disconnected" in text and not self._security.tls:
            return (
                f"the broker closed the connection at the first request, as a TLS listener does to a "
                f"{self._security.protocol} client: set KAFKA_SECURITY_PROTOCOL to SSL or SASL_SSL ({detail})"
            )
        if "brokers are down" in text:
            return None if self._reason else detail  # a summary: a specific reason said more
        if text.startswith(("FAIL", "ERROR")) or "Connection refused" in text:
            return detail
        if logged:
            return None  # an informational log line says nothing about a failure
        return detail if self._reason is None else None


def replica_shortfall(topic_metadata: Any, min_insync: int | None) -> str | None:
    """Why ``acks=all`` writes to this topic fail, from its metadata (confluent's TopicMetadata); None when they can't.

    A partition without a leader takes no writes; one with fewer in-sync
    replicas than ``min_insync`` answers ``NOT_ENOUGH_REPLICAS``. When the
    cluster does not say (None), MSK's default is assumed: 2, or the copies
    there are when fewer.
    """
    leaderless, short = [], []
    for number, partition in sorted(topic_metadata.partitions.items()):
        wanted = min_insync if min_insync is not None else min(2, len(partition.replicas))
        if partition.leader < 0:
            leaderless.append(number)
        elif len(partition.isrs) < wanted:
            short.append((number, len(partition.isrs), len(partition.replicas), wanted))
    if short:
        number, in_sync, copies, wanted = short[0]
        return (
            f"NOT_ENOUGH_REPLICAS: partition {number} of {topic_metadata.topic} (and {len(short) - 1} more) has "
            f"{in_sync} in-sync replica(s) of {copies}, fewer than min.insync.replicas={wanted}; Kafka refuses "
            "acknowledged writes until a broker comes back"
        )
    if leaderless:
        return f"partitions {leaderless} of {topic_metadata.topic} have no leader: their brokers are down"
    return None
