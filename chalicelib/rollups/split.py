"""A report's split (which hours and days of its window the rollups answer) read once, reused while it
holds, and checked by the statement that reads the data.

A report written with :data:`SPLIT_MARK` (and the overview with :data:`PREFIXES_MARK`) can take its split
two ways:

- **Read in the statement** (:data:`chalicelib.rollups.sql.SPLIT_NAMES`): one statement, but ClickHouse's
  analyzer resolves the split's subquery again in every part of the statement that names one of its
  parts, about 2 ms each, besides evaluating it (17 ms; 45 ms with the overview's day prefixes).
- **Read before** (:func:`query`): the split is read in a statement of its own, or taken from a split of
  the same window read less than :data:`REUSE_S` ago, and passed in as parameters. The statement that
  reads the data also checks, at the same moment, that the split still holds
  (:data:`chalicelib.rollups.sql.SPLIT_HOLDS`): no hour it relies on (a clean hour, any hour of a clean
  day, an hour it didn't know) has a newer mark than it read. If one has, the statement fails before it
  reads anything and the split is read again. A split can only be behind the other way: an hour
  compacted since it was read is still read raw, which is exact, until the split is read again (a
  compaction round in this process forgets the kept splits at once).

Both give the same numbers (the tests compare every report with raw events). A split whose parameters
would be large (a long window with many hours) is read in the statement: parameters travel in the URL
of an HTTP request.

A split read before also carries the usable cuts of its dirty hours (:data:`chalicelib.rollups.sql.CUTS`,
:func:`used_cuts`): a report reads a cut's rows and the hour's events from the cut on raw, and checks
that no late mark came after the cut's cover. A split read in the statement uses no cuts.

A split read before also gives the overview its day prefixes' arrays (:func:`prefix_parts`), computed
here by the rules the statement would apply itself (:data:`chalicelib.rollups.sql.PREFIX_NAMES`) and
passed as constants: read through subqueries over lambdas, they cost the busy overview about 15 ms.

A split read before also carries, for the clicks, errors and custom events reports and a timeseries with
half-hour edges, the hours of its window compacted without their rows (:data:`chalicelib.rollups.sql.UNFLAGGED`,
migrations 019 and 020), which they read raw. Kept, that list can only be too long (an hour written again since is read raw, which is exact):
an hour leaves it clean and can only join it with a newer generation, one covering a newer mark, which the
check sees.

A split read before also shapes the statement: the parts marked with :func:`when_open` (reads of dirty
hours, of clean hours of days not clean) are left out when it lists no such hours, the common case of a
window of compacted days (the overview of a clean month: 204 -> 104 ms). That is exact for the same
reason as the rest: an hour that turns dirty after the split was read was clean or unknown to it, so the
check fails and the statement is made again from the split read anew.

The same holds, part by part, for the parts marked with :func:`when_all`: each reads nothing unless every
array it names (a part of the split, a derived array, a report parameter) has an element, and is left out
when one is empty. On the busy bench day (no clean day, no later hours) the overview reads 12 tables, not
18: about 10 ms less of its 150-170 ms, most of it ClickHouse's analysis and planning.
"""

from __future__ import annotations

import re
import threading
import time
import weakref
from collections.abc import Iterable
from datetime import date
from typing import Any

from chalicelib.rollups.sql import (
    CUT_PARTS,
    CUTS,
    PREFIX_NAMES,
    PREFIX_PARAMETERS,
    PREFIX_PARTS,
    PREFIXES,
    SPLIT,
    SPLIT_HOLDS,
    SPLIT_HOUR_PARTS,
    SPLIT_NAMES,
    SPLIT_PARAMETERS,
    SPLIT_PARTS,
    UNFLAGGED,
    UNFLAGGED_NAMES,
    UNFLAGGED_PARAMETERS,
)

# Where a report's ``WITH`` takes the split's names, and the overview's day prefixes.
SPLIT_MARK = "/* split */"
PREFIXES_MARK = "/* prefixes */"
# Where a report reading the rows of migrations 019 or 020 takes, in its ``WITH``, the hours it reads raw
# though clean.
UNFLAGGED_MARK = "/* unflagged */"
# How long a split read before a statement is reused for others on the same window (the dashboard's first
# calls, its refreshes). Only its clean hours matter for exactness, and every statement checks those.
REUSE_S = 30.0
# Above this many hours in its parameters a split is read in the statement.
MAX_PARAMETER_HOURS = 4000
_TRIES = 3
# Around a part of a statement that reads dirty hours or clean hours of open days only (when_open).
_OPEN_START, _OPEN_END = "/* open: */", "/* :open */"
_OPEN = re.compile(re.escape(_OPEN_START) + ".*?" + re.escape(_OPEN_END), re.DOTALL)
# Around a part of a statement that reads nothing when one of the arrays it names is empty (when_all).
_IF = re.compile(r"/\* if ([a-z_ ]+): \*/(.*?)/\* :if \1 \*/", re.DOTALL)

_SECONDS = "arrayMap(h -> toUnixTimestamp(h), {})"
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def _part(number: int, name: str) -> str:
    element = f"tupleElement(s, {number})"
    return f"{_SECONDS.format(element) if name in SPLIT_HOUR_PARTS else element} AS {name}"


_SPLIT_READ = (
    f"WITH {SPLIT} AS s, {CUTS} AS c SELECT "
    + ", ".join(_part(n, name) for n, name in enumerate(SPLIT_PARTS, 1))
    + "".join(f", tupleElement(c, {n}) AS all_{name}" for n, name in enumerate(CUT_PARTS, 1))
)
_PREFIXES_READ = f", {_SECONDS.format(PREFIXES)} AS all_prefixes"
_UNFLAGGED_READ = (
    f", {_SECONDS.format(f'tupleElement({UNFLAGGED}, 1)')} AS unflagged_hours, "
    f"tupleElement({UNFLAGGED}, 2) AS unflagged_days"
)


def inline(statement: str) -> str:
    """The statement reading its split itself."""
    return (
        statement.replace(SPLIT_MARK, SPLIT_NAMES)
        .replace(PREFIXES_MARK, PREFIX_NAMES)
        .replace(UNFLAGGED_MARK, UNFLAGGED_NAMES)
    )


def uses_split(statement: str) -> bool:
    return SPLIT_MARK in statement


def when_open(fragment: str) -> str:
    """``fragment`` (a ``UNION ALL`` branch) reads nothing unless the split lists dirty hours or clean hours
    of days that are not clean: a statement given a split without any is run without it."""
    if _OPEN_START in fragment:
        raise ValueError("open parts don't nest")
    return f"{_OPEN_START}{fragment}{_OPEN_END}"


def when_all(names: str, fragment: str) -> str:
    """``fragment`` (a ``UNION ALL`` branch, never a union's first) reads nothing unless each of the arrays
    ``names`` (space-separated parameters of the statement given a split) has an element: a statement given
    a split and parameters where one is empty is run without it."""
    if f"/* if {names}: */" in fragment:
        raise ValueError("parts on the same arrays don't nest")
    return f"/* if {names}: */{fragment}/* :if {names} */"


def _shaped(statement: str, split: dict[str, Any], parameters: dict[str, Any]) -> str:
    """``statement`` without its :func:`when_open` parts when ``split`` has nothing for them to read, and
    without its :func:`when_all` parts one of whose arrays ``parameters`` has empty. A name it doesn't
    give is an error, not an empty array."""
    if not (split["dirty_hours"] or split["open_day_hours"]):
        statement = _OPEN.sub("", statement)

    def kept(part: re.Match[str]) -> str:
        return part.group(2) if all(parameters[name] for name in part.group(1).split()) else ""

    while True:  # an outer part kept loses its marks; the parts inside it are shaped on the next pass
        shaped = _IF.sub(kept, statement)
        if shaped == statement:
            return statement
        statement = shaped


class SplitCache:
    """Splits read for a window, per client (a client is one database), for :data:`REUSE_S`."""

    def __init__(self, reuse_s: float = REUSE_S, *, clock: Any = time.monotonic, size: int = 256) -> None:
        self.reuse_s, self.clock, self.size = reuse_s, clock, size
        self._splits: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], tuple[float, dict[str, Any]]]] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    def get(self, client: Any, key: tuple[Any, ...]) -> dict[str, Any] | None:
        with self._lock:
            found = self._splits.get(client, {}).get(key)
        if found is None or self.clock() - found[0] > self.reuse_s:
            return None
        return found[1]

    def put(self, client: Any, key: tuple[Any, ...], values: dict[str, Any]) -> None:
        with self._lock:
            splits = self._splits.setdefault(client, {})
            if len(splits) >= self.size:
                splits.pop(next(iter(splits)))
            splits[key] = (self.clock(), values)

    def drop(self, client: Any, key: tuple[Any, ...]) -> None:
        with self._lock:
            self._splits.get(client, {}).pop(key, None)

    def kept(self, client: Any) -> int:
        """How many splits are kept for ``client``."""
        with self._lock:
            return len(self._splits.get(client, {}))

    def clear(self) -> None:
        with self._lock:
            self._splits.clear()


CACHE = SplitCache()


def _read(client: Any, params: dict[str, Any], *, prefixes: bool, unflagged: bool) -> dict[str, Any]:
    statement = _SPLIT_READ + (_PREFIXES_READ if prefixes else "") + (_UNFLAGGED_READ if unflagged else "")
    result = client.query(statement, parameters=params)
    return {name: list(value) for name, value in zip(result.column_names, result.result_rows[0], strict=True)}


def used_cuts(split: dict[str, Any], params: dict[str, Any]) -> dict[str, list[int]]:
    """The cuts of ``split`` a report on ``params``' period uses: of its dirty hours, and holding events
    of the period only (the hour starts in it, the cut is not after its end), as the ``CUT_PARTS``
    parameters. ``cut_from`` is each one's cut. None of an hour a timeseries bucket starts inside of
    (``bucket_edges``): a cut's rows are of its hour, which would land whole in one bucket. None for a
    report whose rows have no cuts (``use_cuts`` false): it reads its dirty hours whole."""
    start, end = params.get("start"), params.get("end")
    if not params.get("use_cuts", True):
        start = None
    dirty = set(split["dirty_hours"]) - {int(h.timestamp()) for h in params.get("bucket_edges", ())}
    used = [
        (hour, gen, through, cover)
        for hour, gen, through, cover in zip(*(split.get(f"all_{name}", []) for name in CUT_PARTS), strict=True)
        if start is not None and end is not None and hour in dirty and hour * 1000 >= start and through <= end
    ]
    return {name: [cut[n] for cut in used] for n, name in enumerate(CUT_PARTS)}


def prefix_parts(split: dict[str, Any], params: dict[str, Any]) -> dict[str, list[int]]:
    """The overview's derived prefix arrays (:data:`PREFIX_PARTS`, Unix seconds) from ``split`` and the
    report's ``partial_days``, by the rules :data:`chalicelib.rollups.sql.PREFIX_NAMES` gives them in SQL:
    the prefixes of days neither partial nor clean; the open days' clean hours before their day's prefix,
    the others; of those, the ones on a day with a prefix; the dirty hours on such a day; the prefixes
    of the report's ``whole_days`` and of the others; and the session breakdowns' prefix (the newest whose
    hours the period holds) with its clean hours, the open days' other clean hours, and the clean and
    dirty hours of its day after it."""
    skipped = _epoch_days((*params.get("partial_days", ()), *split["clean_days"]))
    prefixes = [t for t in split.get("all_prefixes", []) if _day(t) not in skipped]
    through: dict[int, int] = {}
    for t in prefixes:  # arrayFirst: the first prefix of the day
        through.setdefault(_day(t), t)
    whole = _epoch_days(params.get("whole_days", ()))
    open_hours = split["open_day_hours"]
    prefix_hours = [h for h in open_hours if h < through.get(_day(h), 0)]
    before = set(prefix_hours)
    later_hours = [h for h in open_hours if h not in before]
    start, end = params.get("start", 0), params.get("end", 0)
    dims = sorted(t for t in prefixes if _day(t) * 86_400_000 >= start and t * 1000 <= end)[-1:]
    dims_through = {_day(t): t for t in dims}
    dims_hours = [h for h in open_hours if h < dims_through.get(_day(h), 0)]
    other_hours = [h for h in open_hours if h >= dims_through.get(_day(h), 0)]
    return {
        "prefixes": prefixes,
        "prefix_hours": prefix_hours,
        "later_hours": later_hours,
        "after_prefix_hours": [h for h in later_hours if _day(h) in through],
        "dirty_prefix_hours": [h for h in split["dirty_hours"] if _day(h) in through],
        "prefixes_whole": [t for t in prefixes if _day(t) in whole],
        "prefixes_split": [t for t in prefixes if _day(t) not in whole],
        "dims_prefixes": dims,
        "dims_hours": dims_hours,
        "other_open_hours": other_hours,
        "dims_later_hours": [h for h in other_hours if _day(h) in dims_through],
        "dims_dirty_hours": [h for h in split["dirty_hours"] if _day(h) in dims_through],
    }


def _epoch_days(days: Iterable[date]) -> set[int]:
    """``days`` as days since the epoch, as :func:`_day` gives them."""
    return {d.toordinal() - _EPOCH_ORDINAL for d in days}


def _day(seconds: int) -> int:
    """The UTC day of Unix ``seconds``, as days since the epoch."""
    return seconds // 86_400


def _as_constants(statement: str) -> str:
    """``statement`` reading the prefix arrays as the constants :data:`PREFIX_PARAMETERS` makes them."""
    for name in PREFIX_PARTS:
        statement = statement.replace(f"(SELECT arrayJoin({name}))", name)
    return statement


def _too_large(split: dict[str, Any]) -> bool:
    parts = (*SPLIT_HOUR_PARTS, "watch_hours", "unflagged_hours")
    return sum(len(split.get(part, ())) for part in parts) > MAX_PARAMETER_HOURS


def query(
    client: Any, statement: str, params: dict[str, Any], *, settings: dict[str, Any], cache: SplitCache = CACHE
) -> Any:
    """Run a report ``statement`` written with :data:`SPLIT_MARK`: its split read before it (or reused)
    and checked in it, or read in it when that can't be done."""
    prefixes, unflagged = PREFIXES_MARK in statement, UNFLAGGED_MARK in statement
    key = (params["project"], params["window_start"], params["window_end"], prefixes, unflagged)
    with_parameters = statement.replace(SPLIT_MARK, SPLIT_PARAMETERS).replace(UNFLAGGED_MARK, UNFLAGGED_PARAMETERS)
    if prefixes:
        with_parameters = _as_constants(with_parameters.replace(PREFIXES_MARK, PREFIX_PARAMETERS))
    for _ in range(_TRIES):
        split = cache.get(client, key)
        if split is None:
            split = _read(client, params, prefixes=prefixes, unflagged=unflagged)
            if _too_large(split):
                break
            cache.put(client, key, split)
        parameters = params | split | used_cuts(split, params) | (prefix_parts(split, params) if prefixes else {})
        checked = f"SELECT * FROM ({_shaped(with_parameters, split, parameters)}) WHERE {SPLIT_HOLDS}"
        try:
            return client.query(checked, parameters=parameters, settings=settings)
        except Exception as exc:
            if "stale split" not in str(exc):
                raise
            cache.drop(client, key)
    return client.query(inline(statement), parameters=params, settings=settings)
