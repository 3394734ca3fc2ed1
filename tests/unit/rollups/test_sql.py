"""The SQL the rollups and reports share: the settings their reads of ``events FINAL`` run with, the
session columns the day tier sums by."""

from __future__ import annotations

from types import SimpleNamespace

from chalicelib.rollups.sql import FINAL_SETTINGS, SESSION_DIMENSIONS, final_settings
from chalicelib.stats.sql import DIMENSIONS

EXACT_MODE = "use_skip_indexes_if_final_exact_mode"


def test_reads_turn_the_exact_mode_off_on_a_server_that_has_it() -> None:
    server = SimpleNamespace(server_settings={name: object() for name in FINAL_SETTINGS})
    assert final_settings(server) == FINAL_SETTINGS
    assert final_settings(server)[EXACT_MODE] == 0


def test_a_server_older_than_the_exact_mode_is_not_sent_it_and_still_merges_within_partitions() -> None:
    older = SimpleNamespace(server_settings={"do_not_merge_across_partitions_select_final": object()})
    assert final_settings(older) == {"do_not_merge_across_partitions_select_final": 1}


def test_a_client_that_does_not_say_what_its_server_knows_sends_them_all() -> None:
    assert final_settings(object()) == FINAL_SETTINGS


def test_the_day_tier_sums_sessions_by_every_column_a_report_breaks_sessions_down_by() -> None:
    by_sessions = {column for column, source in DIMENSIONS.values() if source == "sessions"}
    assert by_sessions == set(SESSION_DIMENSIONS)
