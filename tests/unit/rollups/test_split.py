"""The split cache and the retries of a report whose split went stale (a stand-in client; the real engine
is in tests/integration/test_rollups.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import pytest

from chalicelib.rollups import split as rollup_split
from chalicelib.rollups.split import PREFIXES_MARK, SPLIT_MARK, UNFLAGGED_MARK, SplitCache, when_all, when_open

PARAMS = {"project": "p", "window_start": datetime(2026, 11, 20), "window_end": datetime(2026, 11, 21)}
SPLIT = {
    "clean_days": [],
    "clean_hours": [1_795_000_000],
    "dirty_hours": [],
    "dirty_days": [],
    "open_day_hours": [1_795_000_000],
    "watch_hours": [1_795_000_000],
    "watch_marks": [1_795_000_000_000],
}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _reads_split(statement: str) -> bool:
    return statement.startswith("WITH (SELECT tuple(") and "AS watch_marks" in statement


class Reader:
    """A client, as far as the cache sees one."""


class Client(Reader):
    """Answers the split read with SPLIT, and a report as ``report`` says: rows, or a stale split."""

    def __init__(self, report: Any, splits: list[dict[str, Any]] | None = None) -> None:
        self.report, self.statements, self.splits = report, [], list(splits or [])

    def query(self, statement: str, *, parameters: dict[str, Any], settings: Any = None) -> Any:
        self.statements.append(statement)
        if _reads_split(statement):
            split = self.splits.pop(0) if self.splits else SPLIT
            return Result(list(split), [tuple(split.values())])
        return self.report(statement)


@dataclass
class Result:
    column_names: list[str]
    result_rows: list[tuple[Any, ...]] = field(default_factory=list)


def _stale(statement: str) -> Result:
    if "stale split" in statement and SPLIT_MARK not in statement:
        raise RuntimeError("Code: 6. DB::Exception: Cannot parse string 'stale split' as UInt8")
    return Result(["n"], [(1,)])


def test_a_split_is_reused_for_its_window_until_it_is_older_than_the_reuse_time() -> None:
    clock, client, other = Clock(), Reader(), Reader()
    cache = SplitCache(30.0, clock=clock)
    cache.put(client, ("p", 1), {"a": 1})
    clock.now = 30.0
    assert cache.get(client, ("p", 1)) == {"a": 1}
    assert cache.get(client, ("p", 2)) is None  # another window
    assert cache.get(other, ("p", 1)) is None  # another client: another database
    clock.now = 30.5
    assert cache.get(client, ("p", 1)) is None


def test_the_cache_keeps_at_most_its_size_per_client_dropping_the_oldest() -> None:
    cache, client = SplitCache(size=2), Reader()
    for window in (1, 2, 3):
        cache.put(client, ("p", window), {"w": window})
    assert [cache.get(client, ("p", w)) for w in (1, 2, 3)] == [None, {"w": 2}, {"w": 3}]


def test_a_report_whose_split_stays_stale_is_read_again_then_reads_its_split_itself() -> None:
    client = Client(_stale)
    result = rollup_split.query(client, f"WITH {SPLIT_MARK} SELECT 1", PARAMS, settings={}, cache=SplitCache())
    assert result.result_rows == [(1,)]
    reads = [s for s in client.statements if _reads_split(s)]
    checked = [s for s in client.statements if s.startswith("SELECT * FROM (")]
    assert (len(reads), len(checked)) == (3, 3)  # each stale answer drops the split and reads it again
    assert "AS split, tupleElement(split, 1) AS clean_days" in client.statements[-1]  # then in the statement


def test_a_report_reuses_the_split_read_for_the_one_before_on_the_same_window() -> None:
    client, cache = Client(lambda statement: Result(["n"], [(1,)])), SplitCache()
    for _ in range(3):
        rollup_split.query(client, f"WITH {SPLIT_MARK}, {PREFIXES_MARK} SELECT 1", PARAMS, settings={}, cache=cache)
    assert sum(map(_reads_split, client.statements)) == 1
    checked = [s for s in client.statements if s.startswith("SELECT * FROM (")]
    assert checked and all("AS dirty_prefix_hours" in s for s in checked)  # the prefixes as parameters


def test_the_overview_given_a_split_reads_its_prefix_arrays_as_constant_parameters_not_through_subqueries() -> None:
    client = Client(lambda statement: Result(["n"], [(1,)]))
    ten, eleven = 1_795_000_000 - 1_795_000_000 % 3600, 1_795_000_000 - 1_795_000_000 % 3600 + 3600
    split = SPLIT | {"open_day_hours": [ten], "dirty_hours": [eleven], "all_prefixes": [eleven]}
    statement = f"WITH {SPLIT_MARK}, {PREFIXES_MARK} SELECT 1 WHERE hour IN (SELECT arrayJoin(prefix_hours))"
    rollup_split.query(client, statement, PARAMS | {"partial_days": []}, settings={}, cache=SplitCache())
    read = client.statements[-1]
    assert "hour IN prefix_hours" in read and "arrayJoin" not in read
    assert "CAST({prefix_hours:Array(UInt32)} AS Array(DateTime('UTC'))) AS prefix_hours" in read
    assert rollup_split.prefix_parts(split, {"partial_days": []}) == {
        "prefixes": [eleven],
        "prefix_hours": [ten],  # the clean hour before the prefix's end
        "later_hours": [],
        "after_prefix_hours": [],
        "dirty_prefix_hours": [eleven],
        "prefixes_whole": [],  # the report holds no day whole
        "prefixes_split": [eleven],
        "dims_prefixes": [],  # the period (none given) doesn't hold the prefix's hours
        "dims_hours": [],
        "other_open_hours": [ten],
        "dims_later_hours": [],
        "dims_dirty_hours": [],
    }
    whole = rollup_split.prefix_parts(split, {"partial_days": [], "whole_days": [date(2026, 11, 18)]})
    assert (whole["prefixes_whole"], whole["prefixes_split"]) == ([eleven], [])
    midnight = ten - ten % 86_400
    held = rollup_split.prefix_parts(split, {"start": midnight * 1000, "end": (eleven + 1800) * 1000})
    assert [held[name] for name in ("dims_prefixes", "dims_hours", "other_open_hours", "dims_dirty_hours")] == [
        [eleven],
        [ten],
        [],
        [eleven],
    ]
    late_start = rollup_split.prefix_parts(split, {"start": (midnight + 60) * 1000, "end": (eleven + 1800) * 1000})
    assert late_start["dims_prefixes"] == [] and late_start["other_open_hours"] == [ten]


def test_any_other_error_of_a_report_is_raised_as_it_is() -> None:
    def broken(statement: str) -> Result:
        raise RuntimeError("Code: 241. DB::Exception: Memory limit exceeded")

    with pytest.raises(RuntimeError, match="Memory limit"):
        rollup_split.query(Client(broken), f"WITH {SPLIT_MARK} SELECT 1", PARAMS, settings={}, cache=SplitCache())


OPEN_STATEMENT = f"WITH {SPLIT_MARK} SELECT 1{when_open(' UNION ALL SELECT 2')} UNION ALL SELECT 3"


def _answer(statement: str) -> Result:
    return Result(["n"], [(1,)])


@pytest.mark.parametrize(
    ("dirty_hours", "open_day_hours", "kept"),
    [([], [], False), ([1_795_003_600], [], True), ([], [1_795_000_000], True)],
)
def test_the_parts_reading_dirty_hours_or_clean_hours_of_open_days_are_left_out_when_the_split_has_none(
    dirty_hours: list[int], open_day_hours: list[int], kept: bool
) -> None:
    split = SPLIT | {"dirty_hours": dirty_hours, "open_day_hours": open_day_hours}
    client = Client(_answer, [split])
    rollup_split.query(client, OPEN_STATEMENT, PARAMS, settings={}, cache=SplitCache())
    assert ("SELECT 2" in client.statements[-1]) is kept
    assert "SELECT 3" in client.statements[-1]


def test_a_split_gone_stale_makes_the_statement_again_with_the_parts_the_new_split_needs() -> None:
    # Read with every hour clean, then an hour turns dirty: the check fails, and the split read anew has it.
    def stale_without_open_part(statement: str) -> Result:
        if "SELECT 2" not in statement:
            raise RuntimeError("Code: 6. DB::Exception: Cannot parse string 'stale split' as UInt8")
        return _answer(statement)

    clean = SPLIT | {"open_day_hours": []}
    client = Client(stale_without_open_part, [clean, SPLIT | {"dirty_hours": [1_795_003_600]}])
    assert rollup_split.query(client, OPEN_STATEMENT, PARAMS, settings={}, cache=SplitCache()).result_rows == [(1,)]
    assert sum(map(_reads_split, client.statements)) == 2
    assert "SELECT 2" in client.statements[-1]


def test_a_statement_reading_its_split_itself_keeps_its_open_parts_and_they_do_not_nest() -> None:
    assert "SELECT 2" in rollup_split.inline(OPEN_STATEMENT)
    with pytest.raises(ValueError, match="nest"):
        when_open(when_open("SELECT 2"))


ALL_STATEMENT = (
    f"WITH {SPLIT_MARK} SELECT 1"
    + when_all("clean_days", " UNION ALL SELECT 2" + when_all("clean_hours whole_days", " UNION ALL SELECT 4"))
    + when_all("clean_hours", " UNION ALL SELECT 5")
    + " UNION ALL SELECT 3"
)


@pytest.mark.parametrize(
    ("clean_days", "whole_days", "kept"),
    [([], [], {"5"}), ([20_412], [], {"2", "5"}), ([20_412], [date(2025, 11, 20)], {"2", "4", "5"})],
)
def test_the_parts_reading_an_array_that_is_empty_are_left_out_with_what_they_hold(
    clean_days: list[int], whole_days: list[date], kept: set[str]
) -> None:
    client = Client(_answer, [SPLIT | {"clean_days": clean_days}])
    rollup_split.query(client, ALL_STATEMENT, PARAMS | {"whole_days": whole_days}, settings={}, cache=SplitCache())
    read = client.statements[-1]
    assert {n for n in "245" if f"SELECT {n}" in read} == kept
    assert "SELECT 1" in read and "SELECT 3" in read and "/* if" not in read and "/* :if" not in read


def test_a_part_naming_an_array_the_statement_is_not_given_is_an_error_not_an_empty_array() -> None:
    statement = f"WITH {SPLIT_MARK} SELECT 1" + when_all("clean_dayz", " UNION ALL SELECT 2")
    with pytest.raises(KeyError, match="clean_dayz"):
        rollup_split.query(Client(_answer), statement, PARAMS, settings={}, cache=SplitCache())


def test_a_statement_reading_its_split_itself_keeps_the_parts_on_arrays_and_they_do_not_nest_in_themselves() -> None:
    assert all(f"SELECT {n}" in rollup_split.inline(ALL_STATEMENT) for n in "245")
    with pytest.raises(ValueError, match="nest"):
        when_all("clean_days", when_all("clean_days", " UNION ALL SELECT 2"))


def test_a_report_uses_the_cuts_of_its_dirty_hours_that_hold_only_events_of_its_period() -> None:
    ten, eleven, twelve = 1_795_000_000, 1_795_003_600, 1_795_007_200  # hours, Unix seconds
    split = SPLIT | {
        "dirty_hours": [eleven, twelve],
        "all_cut_hours": [ten, eleven, twelve],
        "all_cut_gens": [1, 2, 3],
        "all_cut_from": [(ten + 600) * 1000, (eleven + 1800) * 1000, (twelve + 1200) * 1000],
        "all_cut_covers": [7, 8, 9],
    }
    period = {"start": ten * 1000, "end": (twelve + 900) * 1000}  # ends before twelve's cut
    assert rollup_split.used_cuts(split, PARAMS | period) == {  # ten is clean: its cut is not read
        "cut_hours": [eleven],
        "cut_gens": [2],
        "cut_from": [(eleven + 1800) * 1000],
        "cut_covers": [8],
    }
    later = {"start": (eleven + 60) * 1000, "end": (twelve + 3600) * 1000}  # starts inside eleven
    assert rollup_split.used_cuts(split, PARAMS | later)["cut_hours"] == [twelve]
    assert rollup_split.used_cuts(SPLIT, PARAMS | period)["cut_hours"] == []  # a split read without cuts
    # A report whose rows have no cuts (clicks, errors) reads its dirty hours whole.
    assert rollup_split.used_cuts(split, PARAMS | period | {"use_cuts": False})["cut_hours"] == []


def test_the_clicks_and_errors_reports_read_the_hours_without_their_rows_with_the_split_as_constants() -> None:
    ten = 1_795_000_000 - 1_795_000_000 % 3600
    split = SPLIT | {"unflagged_hours": [ten], "unflagged_days": [date(2026, 11, 18)]}
    client, cache = Client(lambda statement: Result(["n"], [(1,)]), [split, SPLIT]), SplitCache()
    statement = f"WITH {SPLIT_MARK}, {UNFLAGGED_MARK} SELECT 1 WHERE hour IN unflagged_hours"
    for _ in range(2):
        rollup_split.query(client, statement, PARAMS, settings={}, cache=cache)
    reads = [s for s in client.statements if _reads_split(s)]
    assert len(reads) == 1 and "AS unflagged_hours" in reads[0] and "event_props = 1" in reads[0]
    checked = client.statements[-1]
    assert "CAST({unflagged_hours:Array(UInt32)} AS Array(DateTime('UTC'))) AS unflagged_hours" in checked
    assert "rollup_hour_gens" not in checked.split(" WHERE toUInt8(")[0]  # not a subquery of its own
    # A split of the same window without them (another report's) is read apart, without them.
    rollup_split.query(client, f"WITH {SPLIT_MARK} SELECT 1", PARAMS, settings={}, cache=cache)
    reads = [s for s in client.statements if _reads_split(s)]
    assert len(reads) == 2 and "unflagged_hours" not in reads[1]
    inline = rollup_split.inline(statement)
    assert "AS unflagged_hours" in inline and "event_props = 1" in inline


def test_the_late_margin_of_the_cuts_is_the_one_the_marks_table_applies() -> None:
    from chalicelib.rollups.sql import LATE_MARK
    from trackflow.dev import MIGRATIONS_DIR

    ddl = (MIGRATIONS_DIR / "014_hour_cuts.sql").read_text()
    assert f"if(earliest < changed_at - {LATE_MARK}, changed_at" in ddl
