"""trackflow.cli_common: progress of long work, readable in a log as on a terminal."""

from __future__ import annotations

import logging
import re

import pytest

from trackflow.cli_common import ReadAfterClose, configure_logging, counting


def test_progress_in_a_log_is_a_counter_line_with_a_rate(capsys: pytest.CaptureFixture[str]) -> None:
    with counting(30_000, "30,000 events -> table", every_s=0) as advance:
        for _ in range(3):
            advance(10_000)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "30,000 events -> table: 30,000 events"
    assert [re.sub(r"\(.*\)", "(rate)", line) for line in lines[1:]] == [
        "  10,000 of 30,000 events (rate)",
        "  20,000 of 30,000 events (rate)",
        "  30,000 of 30,000 events (rate)",
    ]
    assert re.search(r"\([\d,]+ events/s\)$", lines[-1])


def test_kafka_pythons_read_after_our_own_close_logs_no_traceback_and_other_errors_still_show(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from kafka.net.transport import KafkaTCPTransport

    configure_logging(verbose=False)
    configure_logging(verbose=False)  # as a second command in one process does
    transport_log = logging.getLogger("kafka.net.transport")
    assert sum(isinstance(f, ReadAfterClose) for f in transport_log.filters) == 1

    # The library's own read, on a transport closed (by us) while it waited for the socket.
    closed = KafkaTCPTransport(net=None, sock=None)
    with caplog.at_level(logging.ERROR, logger="kafka"):
        _data, error = closed._sock_recv()
        assert error is not None  # the library still ends that read as a failed one
        assert caplog.records == []

        transport_log.error("a real socket error", exc_info=OSError(104, "Connection reset by peer"))
        assert [r.getMessage() for r in caplog.records] == ["a real socket error"]
