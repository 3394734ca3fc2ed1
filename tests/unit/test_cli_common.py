"""trackflow.cli_common: progress of long work, readable in a log as on a terminal."""

from __future__ import annotations

import re

import pytest

from trackflow.cli_common import counting


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
