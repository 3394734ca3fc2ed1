"""A person in the stored events: who they are (a user id or an anonymous id) and which rows are theirs.

A person named by ``user_id`` is every event with that user id *and* every
event without a user id of an anonymous id ever seen with it in the project
(the pages they viewed before ``identify``; another person signed in on the
same browser keeps theirs). A person named by ``anonymous_id`` is that
browser's events. :func:`person_ids` resolves the ids once; export (access
requests) and erasure (:func:`erase`) both select with
:meth:`PersonIds.condition`.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from chalicelib.cluster_ddl import alter
from chalicelib.collect.events import MAX_ID_LENGTH
from chalicelib.errors import RequestError
from chalicelib.storage.clickhouse import LETTER_EVENTS, letter_field

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


@dataclass(frozen=True)
class PersonIds:
    """The ids a person's rows carry: user ids (every event with one is theirs) and browsers (anonymous
    ids). A browser linked to a user id holds the person's events *without* a user id only (another
    person may have signed in on it); a browser named on its own holds all its events."""

    users: tuple[str, ...]
    browsers: tuple[str, ...]
    whole_browsers: bool

    def condition(self, params: dict[str, Any], *, user: str = "user_id", browser: str = "anonymous_id") -> str:
        """An SQL condition for the person's rows, on ``events`` or on the ``user``/``browser`` expressions
        given (a dead letter's); adds the ids to ``params``."""
        params.update(person_users=list(self.users), person_browsers=list(self.browsers))
        users = f"has({{person_users:Array(String)}}, {user})"
        browsers = f"has({{person_browsers:Array(String)}}, {browser})"
        if self.whole_browsers:
            return f"({browsers} OR {users})"
        return f"({users} OR ({user} = '' AND {browsers}))"


def person_ids(client: Any, project_id: str, person: Person) -> PersonIds:
    """The ids of a person's rows: an anonymous id alone, or a user id and every anonymous id seen with it."""
    if person.kind == "anonymous_id":
        return PersonIds((), (person.value,), whole_browsers=True)
    rows = client.query(
        "SELECT DISTINCT anonymous_id FROM events WHERE project_id = {p:String} AND user_id = {u:String} "
        "AND anonymous_id != ''",
        parameters={"p": project_id, "u": person.value},
    ).result_rows
    return PersonIds((person.value,), tuple(sorted(r[0] for r in rows)), whole_browsers=False)


def id_hash(project_id: str, value: str) -> str:
    """How an erased id is kept: hex SHA-256 of the project and the id (the same for user and anonymous ids,
    since ingest checks both fields of an event against one list)."""
    return hashlib.sha256(f"{project_id}\0{value}".encode("utf-8", "surrogatepass")).hexdigest()


def person_hash(project_id: str, person: Person) -> str:
    """The audit row's name for the person: a hash of project, kind and id."""
    return id_hash(project_id, f"{person.kind}\0{person.value}")


@dataclass(frozen=True)
class Receipt:
    """What an erasure did; also its audit row (which names the person only by :func:`person_hash`)."""

    receipt_id: str
    erased_at: datetime
    project_id: str
    kind: str
    person_hash: str
    actor: str
    linked_ids: int
    events: int
    dead_letters: int
    hours: int

    def to_public(self) -> dict[str, Any]:
        body = asdict(self)
        body["erased_at"] = self.erased_at.isoformat()
        body["still_in_kafka"] = KAFKA_NOTE
        return body


KAFKA_NOTE = (
    "Records already on the Kafka topics are not rewritten: they go when the topic's retention "
    "(trackflow topics create --retention-hours, 7 days by default) removes them. Until then a "
    "redelivery of them is dropped at ingest, because the ids are on the erased list."
)


def _letters_of(ids: PersonIds, params: dict[str, Any]) -> str:
    """Dead letters holding an event of the person, by the same rule as their stored events."""
    person = ids.condition(params, user=letter_field("user_id"), browser=letter_field("anonymous_id"))
    return f"arrayExists(e -> {letter_field('project_id')} = {{project:String}} AND {person}, {LETTER_EVENTS})"


def erase(
    client: Any,
    project_id: str,
    person: Person,
    *,
    actor: str,
    now: datetime,
    rebuild: Any,
    cluster: str | None = None,
) -> Receipt:
    """Erase a person's events, dead letters and their share of the rollups; record it; return the receipt.

    The ids go on the erased list first, so ingest stops storing them before anything is deleted;
    ``rebuild(client, project_id, hours, cluster=)`` (:func:`chalicelib.rollups.compaction.rebuild`) then makes the
    rollups of every hour that held them forget them. A second call finds nothing and deletes nothing.
    """
    ids = person_ids(client, project_id, person)
    receipt_id = str(uuid.uuid4())
    params: dict[str, Any] = {"project": project_id}
    events_of = f"project_id = {{project:String}} AND {ids.condition(params)}"
    letters_of = _letters_of(ids, params)
    client.insert(
        "erased_ids",
        [[project_id, "user_id", id_hash(project_id, v), 0, now, receipt_id] for v in ids.users]
        + [
            [project_id, "anonymous_id", id_hash(project_id, v), int(not ids.whole_browsers), now, receipt_id]
            for v in ids.browsers
        ],
        column_names=("project_id", "field", "id_hash", "unclaimed_only", "erased_at", "receipt_id"),
    )
    hours = [
        r[0]
        for r in client.query(
            f"SELECT DISTINCT toStartOfHour(timestamp) FROM events WHERE {events_of}", parameters=params
        ).result_rows
    ]
    events = client.query(f"SELECT count() FROM events FINAL WHERE {events_of}", parameters=params).result_rows[0][0]
    letters = client.query(f"SELECT count() FROM dead_letters WHERE {letters_of}", parameters=params).result_rows[0][0]
    wait = {"mutations_sync": 2}
    if hours:
        client.command(f"{alter('events', cluster)} DELETE WHERE {events_of}", parameters=params, settings=wait)
        rebuild(client, project_id, hours, cluster=cluster)
    if letters:
        command = f"{alter('dead_letters', cluster)} DELETE WHERE {letters_of}"
        client.command(command, parameters=params, settings=wait)
    receipt = Receipt(
        receipt_id,
        now,
        project_id,
        person.kind,
        person_hash(project_id, person),
        actor,
        len(ids.users) + len(ids.browsers),
        int(events),
        int(letters),
        len(hours),
    )
    row = asdict(receipt)
    client.insert("erasures", [list(row.values())], column_names=tuple(row))
    return receipt


class ErasedIds:
    """The erased ids of a batch's projects, for ingest: one small query per batch."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def matcher(self, project_ids: Iterable[str]) -> Callable[[str, str, str], bool]:
        """``erased(project, user_id, anonymous_id)``: the event belongs to an erased person."""
        wanted = sorted(set(project_ids))
        rows = (
            self._client.query(
                "SELECT project_id, field, id_hash, max(unclaimed_only) FROM erased_ids "
                "WHERE has({p:Array(String)}, project_id) GROUP BY project_id, field, id_hash",
                parameters={"p": wanted},
            ).result_rows
            if wanted
            else []
        )
        if not rows:
            return lambda project, user, browser: False
        users = {(r[0], r[2]) for r in rows if r[1] == "user_id"}
        browsers = {(r[0], r[2]): bool(r[3]) for r in rows if r[1] == "anonymous_id"}

        def erased(project: str, user: str, browser: str) -> bool:
            if user and (project, id_hash(project, user)) in users:
                return True
            unclaimed_only = browsers.get((project, id_hash(project, browser))) if browser else None
            return unclaimed_only is not None and (not unclaimed_only or not user)

        return erased
