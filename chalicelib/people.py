"""A person in the stored events: who they are (a user id or an anonymous id) and which rows are theirs.

A person named by ``user_id`` is every event with that user id *and* every
event of an anonymous id ever seen with it in the project (the pages they
viewed before ``identify``). A person named by ``anonymous_id`` is that
browser's events. Export (access requests) and erasure select with the same
:func:`person_condition`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chalicelib.errors import RequestError
from chalicelib.events import MAX_ID_LENGTH

KINDS = ("user_id", "anonymous_id")


@dataclass(frozen=True)
class Person:
    kind: str  # one of KINDS
    value: str


def person_from(params: dict[str, str | None]) -> Person:
    """The one person named by ``user_id`` or ``anonymous_id``; 400 naming the problem otherwise."""
    given = [(kind, value) for kind in KINDS if (value := params.get(kind)) is not None]
    if len(given) != 1:
        raise RequestError("name exactly one of user_id or anonymous_id", field="user_id", code="person_required")
    kind, value = given[0]
    if not value or len(value) > MAX_ID_LENGTH or not value.isprintable():
        raise RequestError(
            f"{kind} must be 1 to {MAX_ID_LENGTH} printable characters (ids longer than that are never stored)",
            field=kind,
        )
    return Person(kind, value)


def person_condition(person: Person, params: dict[str, Any]) -> str:
    """An SQL condition on ``events`` (in a statement with ``{project:String}``) for the person's rows;
    adds the person's id to ``params``."""
    params["person"] = person.value
    if person.kind == "anonymous_id":
        return "anonymous_id = {person:String}"
    return (
        "(user_id = {person:String} OR anonymous_id IN (SELECT anonymous_id FROM events "
        "WHERE project_id = {project:String} AND user_id = {person:String} AND anonymous_id != ''))"
    )
