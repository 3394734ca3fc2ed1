"""Retention's day rule and schedule (chalicelib.storage.retention); the deletes themselves: tests/integration/test_retention.py."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

from chalicelib.projects import named_project
from chalicelib.storage.retention import TABLE_DAYS, Schedule, cutoffs, first_kept_day


def test_a_retention_of_n_days_keeps_today_and_the_n_minus_one_before() -> None:
    assert first_kept_day(date(2026, 11, 10), 1) == date(2026, 11, 10)
    assert first_kept_day(date(2026, 11, 10), 3) == date(2026, 11, 8)
    assert first_kept_day(date(2026, 3, 1), 400) == date(2025, 1, 26)


def test_every_table_that_holds_a_projects_days_is_expired_by_retention() -> None:
    from chalicelib.rollups.compaction import BOOK_TABLES, ROLLUP_TABLES

    assert {"events", "dead_letters", *ROLLUP_TABLES, *BOOK_TABLES} == set(TABLE_DAYS)


def test_projects_without_their_own_retention_get_the_default() -> None:
    own = replace(named_project("shop"), retention_days=30)
    default = named_project("blog")
    firsts, fallback = cutoffs([own, default], default_days=400, today=date(2026, 11, 10))
    assert firsts == {"shop": date(2026, 10, 12), "blog": fallback}
    assert fallback == date(2025, 10, 7)


class _Projects:
    def all(self) -> list[Any]:
        return []


def test_the_schedule_runs_at_most_once_per_interval() -> None:
    now = [0.0]
    counts: list[str] = []

    class Client:
        def query(self, *args: Any, **kwargs: Any) -> Any:
            counts.append(args[0])
            return type("R", (), {"result_rows": [(0,)]})()

    schedule = Schedule(every_s=100, clock=lambda: now[0])
    at = datetime(2026, 11, 10, tzinfo=UTC)
    assert schedule.run_if_due(Client(), _Projects(), default_days=400, now=at) is not None
    now[0] = 99
    assert schedule.run_if_due(Client(), _Projects(), default_days=400, now=at) is None
    now[0] = 100
    assert schedule.run_if_due(Client(), _Projects(), default_days=400, now=at) is not None
    assert len(counts) == 2 * len(TABLE_DAYS)  # one count per table per run; nothing expired, nothing deleted
