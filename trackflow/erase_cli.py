"""``trackflow erase``: remove one person's data (a GDPR erasure request) and print the receipt."""

from __future__ import annotations

import getpass
import socket
from datetime import UTC, datetime

import click

from trackflow.cli_common import current_settings


@click.command("erase")
@click.option("--project", "project_id", required=True, help="The project's id (`trackflow projects list`).")
@click.option("--user-id", help="The person's user id (identify()): also erases every anonymous id linked to it.")
@click.option("--anonymous-id", help="A browser's anonymous id: erases all of its events.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def erase(project_id: str, user_id: str | None, anonymous_id: str | None, yes: bool) -> None:
    """Erase a person's events, dead letters and their share of the rollups, and record it (without the id).

    \b
    Example:
      trackflow export --project shop --user-id u-42 --format jsonl --out u-42.jsonl   # what we held
      trackflow erase --project shop --user-id u-42

    The ids go on the erased list, so a record redelivered from Kafka is not
    stored again; records on the topics go at the topic's retention. Running
    it twice is harmless: the second run finds nothing. docs/data.md.
    """
    from chalicelib import runtime
    from chalicelib.errors import RequestError, TrackflowError
    from chalicelib.ownership.people import erase as erase_person
    from chalicelib.ownership.people import person_from
    from chalicelib.rollups.compaction import rebuild

    try:
        person = person_from({"user_id": user_id, "anonymous_id": anonymous_id})
    except RequestError as exc:
        raise click.UsageError(exc.message) from None
    if not yes:
        click.confirm(f"erase everything stored of {person.kind} {person.value!r} in project {project_id}?", abort=True)
    settings = current_settings()
    runtime.configure(settings=settings)
    actor = f"cli: {getpass.getuser()}@{socket.gethostname()}"
    try:
        receipt = erase_person(
            runtime.rollup_client(),
            project_id,
            person,
            actor=actor,
            now=datetime.now(UTC),
            rebuild=rebuild,
            cluster=settings.clickhouse.cluster,
        )
    except TrackflowError as exc:
        raise click.ClickException(exc.message) from None
    for name, value in receipt.to_public().items():
        click.echo(f"{name:>16}  {value}")
