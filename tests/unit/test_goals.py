"""The goal and funnel model (chalicelib.goals): validation, step resolution, pattern escaping, storage."""

from __future__ import annotations

from dataclasses import replace

import pytest

from chalicelib.errors import NotFoundError, RequestError
from chalicelib.goals import Funnel, like_pattern, new_goal, parse_window, resolve_steps, slug
from chalicelib.projects import Project, new_project

SIGNUP = new_goal("Signup", event="signup", props=(("plan", "pro"),))
PRICING = new_goal("Pricing page", page="/pricing")


def test_a_pattern_reaches_like_with_only_the_star_as_a_wildcard() -> None:
    assert like_pattern("/blog/*") == "/blog/%"
    assert like_pattern("/100%_off\\x*") == "/100\\%\\_off\\\\x%"


def test_ids_come_from_names() -> None:
    assert slug("Newsletter signup!") == "newsletter-signup"
    assert PRICING.goal_id == "pricing-page"
    assert slug("¿?") == "goal"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "x"}, "either a page pattern or an event"),
        ({"name": "x", "page": "/a", "event": "b"}, "either a page pattern or an event"),
        ({"name": "x", "page": "pricing"}, "starting with /"),
        ({"name": "x", "page": "/" + "a" * 600}, "at most 512"),
        ({"name": "x", "page": "/a", "props": (("k", "v"),)}, "belong to event goals"),
        ({"name": "x", "event": "e", "props": (("bad key", "v"),)}, "property condition"),
        ({"name": "", "event": "e"}, "name"),
        ({"name": "x", "event": "e", "goal_id": "Bad Id"}, "goal id"),
    ],
)
def test_goals_that_cannot_work_are_refused_naming_the_problem(kwargs: dict, message: str) -> None:
    with pytest.raises(RequestError, match=message):
        new_goal(**kwargs)


def test_windows_are_durations_up_to_thirty_days() -> None:
    assert parse_window("30m") == 1800
    assert parse_window("12h") == 43_200
    assert parse_window("30d") == 2_592_000
    for bad in ("31d", "3650d", "0s", "1w", "soon", "", "10 d"):
        with pytest.raises(RequestError, match="window"):
            parse_window(bad)


def test_steps_are_goal_ids_or_paths_two_to_eight_and_never_empty() -> None:
    steps = resolve_steps(["/", "pricing-page", "signup"], (PRICING, SIGNUP))
    assert [s.label for s in steps] == ["/", "Pricing page", "Signup"]
    assert steps[0].goal.page == "/" and steps[2].goal is SIGNUP
    with pytest.raises(RequestError, match="2 to 8 steps"):
        resolve_steps(["/"], ())
    with pytest.raises(RequestError, match="2 to 8 steps"):
        resolve_steps(["/"] * 9, ())
    with pytest.raises(RequestError, match="step 2 is empty"):
        resolve_steps(["/", " "], ())
    with pytest.raises(NotFoundError, match="neither a path"):
        resolve_steps(["/", "nope"], (PRICING,))


def test_goals_and_funnels_are_stored_with_the_project_and_old_documents_still_load() -> None:
    project = replace(new_project("Shop"), goals=(SIGNUP, PRICING), funnels=(Funnel("f", "F", ("/", "signup"), 60),))
    assert Project.from_json(project.to_json()) == project
    old = new_project("Old").to_json().replace(', "goals": []', "").replace(', "funnels": []', "")
    assert '"goals"' not in old and Project.from_json(old).goals == ()
