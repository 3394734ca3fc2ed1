"""Goals and funnels of a project: the model, its validation, and the SQL conditions that match them.

A **goal** is what a site owner counts as a conversion:

- a page view whose path matches a pattern (exact, or with ``*`` for any
  characters: ``/blog/*``, ``/thanks``);
- a custom event by name (``signup``), optionally with property conditions
  (``plan = pro``; every condition must hold).

A **funnel** is 2 to 8 steps in order, each a goal id or a path pattern, with
a conversion window (a visitor must go from the first step to the last
within it). Both are stored with the project (``Project.goals``,
``Project.funnels``), so every backend of the project store keeps them.

No pattern or name is ever put into SQL text:
:func:`chalicelib.stats.sql.goal_condition` puts ``{name:Type}`` placeholders
there and the values in parameters; a pattern reaches ClickHouse as a
``LIKE`` parameter (:func:`like_pattern`) with ``%``, ``_`` and ``\\`` escaped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from chalicelib.errors import NotFoundError, RequestError

MAX_GOALS = 50
MAX_FUNNELS = 20
MAX_PATTERN = 512
MAX_NAME = 100
MAX_PROPS = 5
MIN_STEPS = 2
MAX_STEPS = 8
DEFAULT_WINDOW = timedelta(days=1)
MAX_WINDOW = timedelta(days=30)
_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_PROP_NAME = re.compile(r"^[A-Za-z0-9_$.\-]{1,64}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_WINDOW = re.compile(r"^([0-9]{1,5})([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Goal:
    goal_id: str
    name: str
    page: str = ""  # path pattern: a page-view goal
    event: str = ""  # custom event name: an event goal
    props: tuple[tuple[str, str], ...] = ()  # conditions on the event's properties

    @property
    def kind(self) -> str:
        return "page" if self.page else "event"

    def describe(self) -> str:
        if self.page:
            return f"page view of {self.page}"
        conditions = "".join(f", {k} = {v}" for k, v in self.props)
        return f"event {self.event}{conditions}"

    def to_public(self) -> dict[str, Any]:
        return {"id": self.goal_id, "name": self.name, "kind": self.kind, "definition": self.describe()}


@dataclass(frozen=True)
class Funnel:
    funnel_id: str
    name: str
    steps: tuple[str, ...]  # goal ids, or path patterns (starting with /)
    window_s: int = int(DEFAULT_WINDOW.total_seconds())

    def to_public(self) -> dict[str, Any]:
        return {"id": self.funnel_id, "name": self.name, "steps": list(self.steps), "window_s": self.window_s}


@dataclass(frozen=True)
class Step:
    """One resolved funnel step: what it shows as, and the goal that matches it."""

    label: str
    goal: Goal = field(repr=False)


def slug(name: str) -> str:
    """An id from a name: ``Newsletter signup`` -> ``newsletter-signup``."""
    text = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:32].strip("-")
    return text or "goal"


def check_id(value: str, what: str = "goal") -> str:
    if not _ID.match(value):
        raise RequestError(
            f"{what} id {value[:40]!r}: 1-32 of a-z 0-9 _ -, starting with a letter or digit", field=what
        )
    return value


def check_pattern(pattern: str, field_name: str = "page") -> str:
    if not pattern:
        raise RequestError("a page pattern must not be empty", field=field_name)
    if len(pattern) > MAX_PATTERN:
        raise RequestError(f"a page pattern is at most {MAX_PATTERN} characters, got {len(pattern)}", field=field_name)
    if not pattern.startswith("/") or _CONTROL.search(pattern):
        raise RequestError(f"a page pattern is a path starting with / (got {pattern[:40]!r})", field=field_name)
    return pattern


def new_goal(
    name: str, *, page: str = "", event: str = "", props: tuple[tuple[str, str], ...] = (), goal_id: str = ""
) -> Goal:
    """A validated goal; :class:`RequestError` names what is wrong."""
    if not name or len(name) > MAX_NAME or not name.isprintable():
        raise RequestError(f"a goal's name is 1 to {MAX_NAME} printable characters", field="name")
    if bool(page) == bool(event):
        raise RequestError("a goal is either a page pattern or an event name, one of them", field="page")
    if page:
        check_pattern(page)
        if props:
            raise RequestError("property conditions belong to event goals", field="prop")
    if event and (len(event) > 64 or not event.isprintable()):
        raise RequestError("an event name is at most 64 printable characters", field="event")
    if len(props) > MAX_PROPS:
        raise RequestError(f"at most {MAX_PROPS} property conditions", field="prop")
    for key, value in props:
        if not _PROP_NAME.match(key) or len(value) > 200:
            raise RequestError(f"property condition {key[:40]!r}: names are 1-64 of A-Z a-z 0-9 _ $ . -", field="prop")
    return Goal(check_id(goal_id or slug(name)), name, page, event, tuple(props))


def parse_window(text: str) -> int:
    """``30m``, ``12h``, ``1d`` ... up to 30 days, as seconds."""
    match = _WINDOW.match(text)
    seconds = int(match.group(1)) * _UNITS[match.group(2)] if match else 0
    if not 1 <= seconds <= MAX_WINDOW.total_seconds():
        raise RequestError(
            f"window is a duration like 30m, 12h or 7d, at most {MAX_WINDOW.days}d (got {text[:20]!r})", field="window"
        )
    return seconds


def resolve_steps(specs: list[str], goals: tuple[Goal, ...]) -> list[Step]:
    """Funnel steps from their specs (a goal id, or a path pattern); 400 for a wrong count, an empty step,
    an unknown goal id or a bad pattern."""
    if not MIN_STEPS <= len(specs) <= MAX_STEPS:
        raise RequestError(f"a funnel has {MIN_STEPS} to {MAX_STEPS} steps, got {len(specs)}", field="steps")
    by_id = {g.goal_id: g for g in goals}
    steps = []
    for number, spec in enumerate(specs, 1):
        if not spec.strip():
            raise RequestError(f"step {number} is empty", field="steps")
        if spec.startswith("/"):
            check_pattern(spec, "steps")
            steps.append(Step(spec, Goal(f"step{number}", spec, page=spec)))
        elif spec in by_id:
            steps.append(Step(by_id[spec].name, by_id[spec]))
        else:
            known = ", ".join(sorted(by_id)) or "none yet: `trackflow goals add`"
            raise NotFoundError(
                f"step {number}: {spec[:40]!r} is neither a path (starting with /) nor a goal id ({known})",
                field="steps",
                code="unknown_goal",
            )
    return steps


def like_pattern(pattern: str) -> str:
    """A ``*`` pattern as a ``LIKE`` pattern: every other character literal."""
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


def from_json(
    goals: list[dict[str, Any]], funnels: list[dict[str, Any]]
) -> tuple[tuple[Goal, ...], tuple[Funnel, ...]]:
    """The stored form (``dataclasses.asdict``) back into goals and funnels."""
    return (
        tuple(Goal(**g | {"props": tuple(tuple(p) for p in g.get("props", ()))}) for g in goals),
        tuple(Funnel(**f | {"steps": tuple(f["steps"])}) for f in funnels),
    )
