"""The stats API's query string: period, timezone, interval, filters, limits.

:func:`parse_query` turns the request's query parameters into a
:class:`StatsQuery` or raises :class:`RequestError` naming the parameter. Only
names on the lists below are accepted; values are never put into SQL text, they
travel as query parameters (see ``chalicelib.stats.sql``).

Periods: ``period`` is ``today``, ``24h``, ``7d``, ``30d`` or ``90d`` (default
``7d``), or ``from`` and ``to`` as ``YYYY-MM-DD`` days in ``tz`` (both included).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from chalicelib.errors import RequestError
from chalicelib.projects import DEV_PROJECT_ID, MAX_PROJECT_ID_LENGTH

PERIODS = {
    "today": None,
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
    "90d": timedelta(days=90),
}
DEFAULT_PERIOD = "7d"
MAX_SPAN = timedelta(days=400)
INTERVALS = ("hour", "day")
MAX_HOURLY_BUCKETS = 24 * 31
DEFAULT_LIMIT = 10
MAX_LIMIT = 1000
MAX_FILTER_LENGTH = 2048
# Endpoint-specific parameters (a custom event's name and property), as docs/openapi.yaml bounds them.
EXTRA_PARAM_LENGTH = {
    "name": 200,
    "property": 200,
    "format": 16,
    "cursor": 64,
    "goal": 32,
    "dimensions": 256,  # every breakdown's name, comma-separated, is 106 characters
    "funnel": 32,
    "window": 8,
    "steps": 8 * 513,  # chalicelib.goals: 8 steps of up to 512 characters and their commas
}

# Filter name -> the events column it compares with (equality).
FILTER_COLUMNS = {
    "page": "url_path",
    "host": "url_host",
    "referrer": "referrer_domain",
    "utm_source": "utm_source",
    "utm_medium": "utm_medium",
    "utm_campaign": "utm_campaign",
    "country": "country",
    "device": "device_type",
    "browser": "browser",
    "os": "os",
    "event": "type",
}
# Other names a filter answers to: the column's own, as `trackflow sql` shows it.
FILTER_ALIASES = {"device_type": "device"}
PROPERTY_PREFIX = "prop."
_PROPERTY_NAME = re.compile(r"^[A-Za-z0-9_$.\-]{1,64}$")
_DAY = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
# Days a period may name: the range event timestamps are accepted in (and far
# from the ends of what datetime can hold once a time zone is applied).
FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2099, 12, 31)
# Parameters some endpoint reads besides the filters; anything else is a typo.
COMMON_PARAMS = frozenset({"project", "period", "from", "to", "tz", "interval", "limit", "bots"})


@dataclass(frozen=True)
class Filter:
    name: str  # a FILTER_COLUMNS key, or "prop.<property>"
    value: str

    @property
    def property(self) -> str | None:
        return self.name[len(PROPERTY_PREFIX) :] if self.name.startswith(PROPERTY_PREFIX) else None


@dataclass(frozen=True)
class StatsQuery:
    project_id: str
    start: datetime  # UTC, included
    end: datetime  # UTC, excluded
    tz: str
    interval: str
    filters: tuple[Filter, ...] = ()
    include_bots: bool = False
    limit: int = DEFAULT_LIMIT

    @property
    def span(self) -> timedelta:
        return self.end - self.start

    def previous(self) -> StatsQuery:
        """The same query over the period of equal length just before this one."""
        return StatsQuery(
            self.project_id,
            self.start - self.span,
            self.start,
            self.tz,
            self.interval,
            self.filters,
            self.include_bots,
            self.limit,
        )


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise RequestError(f"tz={name!r} is not an IANA time zone such as Europe/Berlin", field="tz") from None


def _day(params: Mapping[str, str], name: str) -> date:
    text = params[name]
    if not _DAY.match(text):
        raise RequestError(f"{name} must be a day as YYYY-MM-DD, got {text!r}", field=name)
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise RequestError(f"{name}={text!r} is not a calendar day", field=name) from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise RequestError(f"{name} must lie between {FIRST_DAY} and {LAST_DAY}, got {text}", field=name)
    return day


def _period(params: Mapping[str, str], zone: ZoneInfo, now: datetime) -> tuple[datetime, datetime]:
    if "from" in params or "to" in params:
        if "period" in params:
            raise RequestError("give either period or from/to, not both", field="period")
        if "from" not in params or "to" not in params:
            raise RequestError("from and to go together", field="from" if "from" not in params else "to")
        first, last = _day(params, "from"), _day(params, "to")
        if last < first:
            raise RequestError("to is before from", field="to")
        start = datetime(first.year, first.month, first.day, tzinfo=zone)
        end = datetime(last.year, last.month, last.day, tzinfo=zone) + timedelta(days=1)
        start, end = start.astimezone(UTC), end.astimezone(UTC)
        if end - start > MAX_SPAN:
            raise RequestError(f"a period may span at most {MAX_SPAN.days} days", field="from")
        return start, end
    name = params.get("period", DEFAULT_PERIOD)
    if name not in PERIODS:
        raise RequestError(f"period must be one of {', '.join(PERIODS)}, got {name!r}", field="period")
    local_now = now.astimezone(zone)
    if name == "today":
        midnight = local_now.replace(hour=0, minute=0, second=0, microsecond=0)
        return midnight.astimezone(UTC), (midnight + timedelta(days=1)).astimezone(UTC)
    # Rolling periods end at the next whole hour so the hourly rollups cover them.
    end = (now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)).astimezone(UTC)
    return end - PERIODS[name], end  # type: ignore[operator]


def _filters(params: Mapping[str, str], allowed: frozenset[str]) -> tuple[Filter, ...]:
    found: list[Filter] = []
    for name, value in sorted(params.items()):
        if name in allowed:
            if name in EXTRA_PARAM_LENGTH and len(value) > EXTRA_PARAM_LENGTH[name]:
                raise RequestError(f"{name} is longer than {EXTRA_PARAM_LENGTH[name]} characters", field=name)
            continue
        name = FILTER_ALIASES.get(name, name)
        if name in FILTER_COLUMNS:
            pass
        elif name.startswith(PROPERTY_PREFIX):
            if not _PROPERTY_NAME.match(name[len(PROPERTY_PREFIX) :]):
                raise RequestError(f"{name!r}: property names are 1-64 letters, digits, _ $ . -", field=name)
        else:
            known = ", ".join(sorted(allowed | set(FILTER_COLUMNS) | set(FILTER_ALIASES))) + ", prop.<name>"
            raise RequestError(f"unknown parameter {name!r}; known: {known}", field=name)
        if len(value) > MAX_FILTER_LENGTH:
            raise RequestError(f"{name} is longer than {MAX_FILTER_LENGTH} characters", field=name)
        found.append(Filter(name, value))
    return tuple(found)


def _limit(params: Mapping[str, str]) -> int:
    text = params.get("limit", str(DEFAULT_LIMIT))
    # ASCII digits only: API Gateway hands over URL-decoded text, and '²' is a digit to str.isdigit().
    if not (text.isascii() and text.isdigit() and len(text) <= 4) or not 1 <= int(text) <= MAX_LIMIT:
        raise RequestError(f"limit must be a whole number from 1 to {MAX_LIMIT}, got {text!r}", field="limit")
    return int(text)


def parse_query(
    params: Mapping[str, str] | None,
    *,
    now: datetime,
    extra: frozenset[str] = frozenset(),
    default_project: str | None = None,
) -> StatsQuery:
    """Validate the query string of a stats request; ``extra`` names endpoint-specific parameters."""
    params = dict(params or {})
    project = params.get("project") or default_project
    if not project:
        raise RequestError("project is required (the project id, as `trackflow projects list` shows)", field="project")
    if len(project) > MAX_PROJECT_ID_LENGTH or not project.isprintable():
        raise RequestError(f"project must be at most {MAX_PROJECT_ID_LENGTH} printable characters", field="project")
    tz = params.get("tz", "UTC")
    zone = _zone(tz)
    start, end = _period(params, zone, now)
    interval = params.get("interval", "hour" if end - start <= timedelta(days=2) else "day")
    if interval not in INTERVALS:
        raise RequestError(f"interval must be hour or day, got {interval!r}", field="interval")
    if interval == "hour" and end - start > timedelta(hours=MAX_HOURLY_BUCKETS):
        raise RequestError(
            f"hourly series are limited to {MAX_HOURLY_BUCKETS // 24} days; use interval=day", field="interval"
        )
    # The development project is where people try curl and automated browsers,
    # which are flagged as bots: there they count unless the query says otherwise.
    bots = params.get("bots", "include" if project == DEV_PROJECT_ID else "exclude")
    if bots not in ("exclude", "include"):
        raise RequestError(f"bots must be exclude or include, got {bots!r}", field="bots")
    return StatsQuery(
        project_id=project,
        start=start,
        end=end,
        tz=tz,
        interval=interval,
        filters=_filters(params, COMMON_PARAMS | extra),
        include_bots=bots == "include",
        limit=_limit(params),
    )
