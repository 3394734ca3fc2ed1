"""``trackflow goals ...`` and ``trackflow funnels ...``: a project's conversions and saved funnels.

They are stored with the project (SQLite, or DynamoDB with TRACKFLOW_PROJECTS_TABLE), so a running
API sees a change within its project cache's 30 s. The model is :mod:`chalicelib.goals`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import click

from chalicelib.errors import RequestError
from chalicelib.goals import MAX_FUNNELS, MAX_GOALS, Funnel, check_id, new_goal, parse_window, resolve_steps, slug
from chalicelib.projects import DEV_PROJECT_ID, Project, dev_project


def _project(project_id: str) -> tuple[Any, Project]:
    """The store and the project (the built-in development one too, stored once it has goals)."""
    from trackflow.projects_cli import project_store, stored_project

    store = project_store()
    if project_id == DEV_PROJECT_ID and store.get(project_id) is None:
        return store, dev_project()
    return store, stored_project(store, project_id)


def _checked(call: Any) -> Any:
    try:
        return call()
    except RequestError as exc:
        raise click.UsageError(exc.message) from None


@click.group()
def goals() -> None:
    """Goals: what counts as a conversion (a page pattern, or a custom event with property conditions)."""


@goals.command("add")
@click.argument("project_id")
@click.argument("name")
@click.option("--page", default="", help="A path, * for any characters: /thanks, /blog/*.")
@click.option("--event", default="", help="A custom event's name, as track('signup') sends it.")
@click.option(
    "--prop", "props", multiple=True, help="With --event: a property condition NAME=VALUE (repeat: all must hold)."
)
@click.option("--id", "goal_id", default="", help="The goal's id in the API (default: from the name).")
def goals_add(project_id: str, name: str, page: str, event: str, props: tuple[str, ...], goal_id: str) -> None:
    """Add a goal NAME to a project.

    \b
    Examples:
      trackflow goals add shop "Signup" --event signup
      trackflow goals add shop "Pro signup" --event signup --prop plan=pro
      trackflow goals add shop "Pricing" --page /pricing
    """
    pairs = []
    for item in props:
        key, eq, value = item.partition("=")
        if not eq:
            raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="--prop")
        pairs.append((key.strip(), value.strip()))
    goal = _checked(lambda: new_goal(name, page=page, event=event, props=tuple(pairs), goal_id=goal_id))
    store, project = _project(project_id)
    if any(g.goal_id == goal.goal_id for g in project.goals):
        raise click.UsageError(f"{project_id} already has a goal {goal.goal_id!r}: give another --id")
    if len(project.goals) >= MAX_GOALS:
        raise click.UsageError(f"a project has at most {MAX_GOALS} goals")
    store.put(replace(project, goals=(*project.goals, goal)))
    click.echo(f"added goal {goal.goal_id}: {goal.describe()}")


@goals.command("list")
@click.argument("project_id")
def goals_list(project_id: str) -> None:
    """List a project's goals and saved funnels."""
    _, project = _project(project_id)
    if not project.goals:
        click.echo(f'no goals yet: trackflow goals add {project_id} "Signup" --event signup')
    for goal in project.goals:
        click.echo(f"{goal.goal_id:24} {goal.name:24} {goal.describe()}")
    for funnel in project.funnels:
        click.echo(
            f"funnel {funnel.funnel_id:17} {funnel.name:24} {' -> '.join(funnel.steps)} within {funnel.window_s} s"
        )


@goals.command("remove")
@click.argument("project_id")
@click.argument("goal_id")
def goals_remove(project_id: str, goal_id: str) -> None:
    """Remove a goal (saved funnels using it must go first)."""
    store, project = _project(project_id)
    if goal_id not in {g.goal_id for g in project.goals}:
        raise click.UsageError(f"{project_id} has no goal {goal_id!r}: `trackflow goals list {project_id}`")
    users = [f.funnel_id for f in project.funnels if goal_id in f.steps]
    if users:
        raise click.UsageError(f"funnels {', '.join(users)} use {goal_id!r}: remove them first")
    store.put(replace(project, goals=tuple(g for g in project.goals if g.goal_id != goal_id)))
    click.echo(f"removed goal {goal_id}")


@click.group()
def funnels() -> None:
    """Saved funnels: 2 to 8 steps (goal ids or paths) in order, within a window."""


@funnels.command("add")
@click.argument("project_id")
@click.argument("name")
@click.option(
    "--step", "steps", multiple=True, required=True, help="A goal id or a path (/pricing, /blog/*); repeat, in order."
)
@click.option(
    "--window", default="1d", show_default=True, help="From the first step to the last: 30m, 12h, 7d (at most 30d)."
)
@click.option("--id", "funnel_id", default="", help="The funnel's id in the API (default: from the name).")
def funnels_add(project_id: str, name: str, steps: tuple[str, ...], window: str, funnel_id: str) -> None:
    """Save a funnel NAME for a project (the dashboard lists them).

    \b
    Example:
      trackflow funnels add shop "Signup" --step / --step pricing --step signup --window 1h
    """
    store, project = _project(project_id)
    _checked(lambda: resolve_steps(list(steps), project.goals))
    window_s = _checked(lambda: parse_window(window))
    funnel_id = _checked(lambda: check_id(funnel_id or slug(name), "funnel"))
    if any(f.funnel_id == funnel_id for f in project.funnels):
        raise click.UsageError(f"{project_id} already has a funnel {funnel_id!r}: give another --id")
    if len(project.funnels) >= MAX_FUNNELS:
        raise click.UsageError(f"a project has at most {MAX_FUNNELS} saved funnels")
    store.put(replace(project, funnels=(*project.funnels, Funnel(funnel_id, name, steps, window_s))))
    click.echo(f"saved funnel {funnel_id}: {' -> '.join(steps)} within {window}")


@funnels.command("remove")
@click.argument("project_id")
@click.argument("funnel_id")
def funnels_remove(project_id: str, funnel_id: str) -> None:
    """Remove a saved funnel."""
    store, project = _project(project_id)
    if funnel_id not in {f.funnel_id for f in project.funnels}:
        raise click.UsageError(f"{project_id} has no funnel {funnel_id!r}: `trackflow goals list {project_id}`")
    store.put(replace(project, funnels=tuple(f for f in project.funnels if f.funnel_id != funnel_id)))
    click.echo(f"removed funnel {funnel_id}")
