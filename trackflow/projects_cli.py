"""``trackflow projects ...``: create and manage projects and their keys."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import click

from chalicelib.collect.privacy import check_keep_params, keep_set
from chalicelib.projects import (
    BOT_POLICIES,
    DEV_PROJECT_ID,
    Project,
    listed_projects,
    new_admin_token,
    new_project,
    new_read_token,
    rotate_key,
)
from chalicelib.settings import MAX_RETENTION_DAYS


def project_store() -> Any:
    from chalicelib import runtime
    from trackflow.cli import _settings

    runtime.configure(settings=_settings())
    return runtime.projects()


def stored_project(store: Any, project_id: str) -> Project:
    project = store.get(project_id)
    if project is None:
        raise click.ClickException(f"no project {project_id!r}; `trackflow projects list` shows them")
    return project


def _show(project: Project) -> None:
    tracker = project.tracker
    rows = [
        ("id", project.project_id),
        ("name", project.name),
        ("enabled", "yes" if project.enabled else "no"),
        ("api keys", ", ".join(project.api_keys)),
        ("read token", project.read_token),
        ("admin token", project.admin_token or "none yet: `trackflow projects rotate-admin-token ID`"),
        ("allowed origins", ", ".join(project.allowed_origins) or "any origin"),
        ("bot policy", project.bot_policy),
        ("honour Sec-GPC", "yes" if project.honor_gpc else "no"),
        ("rate limit", f"{project.rate_limit:g} events/s per instance" if project.rate_limit else "none"),
        (
            "autotrack",
            f"page views {tracker.auto_track_page_views}, clicks {tracker.auto_track_clicks}, errors {tracker.auto_track_errors}",
        ),
        ("sample rate", f"{tracker.sample_rate:g}"),
        ("environment", tracker.environment),
        (
            "retention",
            f"{project.retention_days} days"
            if project.retention_days
            else "the default (TRACKFLOW_RETENTION_DAYS, 400 days unless set)",
        ),
        ("query params", ", ".join(("utm_*", *sorted(keep_set(project.keep_params)))) + "; click ids as a flag"),
    ]
    for name, value in rows:
        click.echo(f"{name:>16}  {value}")


@click.group()
def projects() -> None:
    """Projects and API keys (SQLite in the data dir, or DynamoDB with TRACKFLOW_PROJECTS_TABLE)."""


@projects.command("init-table")
def init_table() -> None:
    """Create the DynamoDB table named by TRACKFLOW_PROJECTS_TABLE (AWS_ENDPOINT_URL for an emulator)."""
    import boto3

    from chalicelib.projects import create_dynamo_table
    from trackflow.cli import _settings

    name = _settings().projects_table
    if not name:
        raise click.ClickException("set TRACKFLOW_PROJECTS_TABLE to the table name to create")
    create_dynamo_table(boto3.resource("dynamodb"), name)
    click.echo(f"created DynamoDB table {name}")


@projects.command()
@click.argument("name")
@click.option(
    "--origin", "origins", multiple=True, help="An allowed origin, e.g. https://shop.example (repeat; none = any)."
)
def create(name: str, origins: tuple[str, ...]) -> None:
    """Create a project called NAME and print its API key and snippet."""
    store = project_store()
    project = new_project(name, allowed_origins=origins)
    store.put(project)
    _show(project)
    from trackflow.deploy import snippet

    click.echo("\nPaste into your page, just before </head>:\n")
    html = snippet(project.api_keys[0], script_src="http://localhost:8080/tracker.js")
    click.echo("\n".join(f"  {line}" for line in html.splitlines()))


@projects.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_projects(as_json: bool) -> None:
    """List every project (in development, the built-in one behind YOUR_API_KEY first)."""
    from trackflow.cli import _settings

    store = project_store()
    found = listed_projects(store, stage=_settings().stage)
    if as_json:
        click.echo(json.dumps([json.loads(p.to_json()) for p in found], indent=2))
        return
    if not found:
        click.echo("no projects yet: `trackflow projects create NAME`")
        return
    click.echo(f"{'id':14}{'name':24}{'enabled':9}{'keys':6}origins")
    for p in found:
        note = "  (built in: key YOUR_API_KEY, no read token needed here)" if p.project_id == DEV_PROJECT_ID else ""
        click.echo(
            f"{p.project_id:14}{p.name[:23]:24}{'yes' if p.enabled else 'no':9}{len(p.api_keys):<6}"
            f"{', '.join(p.allowed_origins) or 'any'}{note}"
        )


@projects.command()
@click.argument("project_id")
def show(project_id: str) -> None:
    """Show one project."""
    _show(stored_project(project_store(), project_id))


@projects.command("rotate-key")
@click.argument("project_id")
@click.option("--keep-old", is_flag=True, help="Keep accepting the old keys too (while pages are updated).")
def rotate(project_id: str, keep_old: bool) -> None:
    """Give a project a new API key."""
    store = project_store()
    project, key = rotate_key(stored_project(store, project_id), keep_old=keep_old)
    store.put(project)
    click.echo(f"new API key: {key}" + ("" if keep_old else " (the old keys no longer work)"))


@projects.command("rotate-read-token")
@click.argument("project_id")
def rotate_read_token(project_id: str) -> None:
    """Give a project a new read token for the stats API; the old one stops working."""
    store = project_store()
    project = stored_project(store, project_id)
    token = new_read_token(project.project_id)
    store.put(replace(project, read_token=token))
    click.echo(f"new read token: {token} (the old one no longer works; a running API notices within 30 s)")


@projects.command("rotate-admin-token")
@click.argument("project_id")
def rotate_admin_token(project_id: str) -> None:
    """Give a project a new admin token (erasing people's data through the API); the old one stops working."""
    store = project_store()
    project = stored_project(store, project_id)
    token = new_admin_token(project.project_id)
    store.put(replace(project, admin_token=token))
    click.echo(f"new admin token: {token} (keep it off web pages and dashboards; the old one no longer works)")


@projects.command("set")
@click.argument("project_id")
@click.option("--name")
@click.option("--origin", "origins", multiple=True, help="Replace the allowed origins (repeat).")
@click.option("--any-origin", is_flag=True, help="Allow every origin again.")
@click.option("--sample-rate", type=click.FloatRange(0, 1))
@click.option("--environment")
@click.option(
    "--bot-policy", type=click.Choice(BOT_POLICIES), help="drop (default) or keep bot traffic (flagged is_bot)."
)
@click.option(
    "--honor-gpc/--ignore-gpc", default=None, help="Drop events from browsers sending Sec-GPC: 1 (default on)."
)
@click.option("--rate-limit", type=click.FloatRange(0), help="Events per second per function instance (0 = none).")
@click.option(
    "--keep-param",
    "keep_params",
    multiple=True,
    help="Keep this query parameter in stored URLs besides utm_*, ref and source (repeat; replaces the list). "
    "New events only.",
)
@click.option("--default-params", is_flag=True, help="Keep only utm_*, ref and source again.")
@click.option(
    "--retention-days",
    type=click.IntRange(0, MAX_RETENTION_DAYS),
    help="Whole UTC days of events kept (today included); older ones are deleted everywhere. 0: the default.",
)
@click.option("--autotrack-page-views/--no-autotrack-page-views", default=None)
@click.option("--autotrack-clicks/--no-autotrack-clicks", default=None)
@click.option("--autotrack-errors/--no-autotrack-errors", default=None)
def set_project(project_id: str, **changes: Any) -> None:
    """Change a project's settings."""
    store = project_store()
    project = stored_project(store, project_id)
    tracker = project.tracker
    for option, attr in [
        ("sample_rate", "sample_rate"),
        ("environment", "environment"),
        ("autotrack_page_views", "auto_track_page_views"),
        ("autotrack_clicks", "auto_track_clicks"),
        ("autotrack_errors", "auto_track_errors"),
    ]:
        if changes[option] is not None:
            tracker = replace(tracker, **{attr: changes[option]})
    project = replace(project, tracker=tracker)
    if changes["name"]:
        project = replace(project, name=changes["name"])
    if changes["bot_policy"]:
        project = replace(project, bot_policy=changes["bot_policy"])
    if changes["honor_gpc"] is not None:
        project = replace(project, honor_gpc=changes["honor_gpc"])
    if changes["rate_limit"] is not None:
        project = replace(project, rate_limit=changes["rate_limit"])
    if changes["retention_days"] is not None:
        project = replace(project, retention_days=changes["retention_days"])
    if changes["default_params"]:
        project = replace(project, keep_params=())
    elif changes["keep_params"]:
        try:
            project = replace(project, keep_params=check_keep_params(changes["keep_params"]))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--keep-param") from exc
    if changes["any_origin"]:
        project = replace(project, allowed_origins=())
    elif changes["origins"]:
        project = replace(project, allowed_origins=tuple(o.rstrip("/") for o in changes["origins"]))
    store.put(project)
    _show(project)


@projects.command()
@click.argument("project_id")
@click.option("--enable", is_flag=True, help="Enable it again instead.")
def disable(project_id: str, enable: bool) -> None:
    """Stop accepting events for a project (its config answers 404)."""
    store = project_store()
    store.put(replace(stored_project(store, project_id), enabled=enable))
    click.echo(f"project {project_id} {'enabled' if enable else 'disabled'}")
