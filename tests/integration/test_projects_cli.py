"""`trackflow projects ...` on the embedded SQLite store, as a user types it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from chalicelib import runtime
from trackflow.cli import main

pytestmark = pytest.mark.integration


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.setenv("TRACKFLOW_DATA_DIR", str(tmp_path))
    for name in ("TRACKFLOW_PROJECTS_TABLE", "KAFKA_BOOTSTRAP_SERVERS", "CLICKHOUSE_URL", "TRACKFLOW_STAGE"):
        monkeypatch.delenv(name, raising=False)
    runtime.reset()
    yield CliRunner()
    runtime.reset()


def _projects(cli: CliRunner) -> list[dict[str, object]]:
    """The projects created, without the built-in development one listed first."""
    result = cli.invoke(main, ["projects", "list", "--json"])
    assert result.exit_code == 0, result.output
    listed: list[dict[str, object]] = json.loads(result.output)
    assert listed[0]["project_id"] == "development"
    return listed[1:]


def test_the_list_starts_with_the_development_project_the_dashboard_also_offers(cli: CliRunner) -> None:
    table = cli.invoke(main, ["projects", "list"]).output.splitlines()
    assert table[1].startswith("development   Development") and "YOUR_API_KEY" in table[1]
    assert len(table) == 2  # no "no projects yet" while the dashboard lists one


def test_create_prints_the_key_and_a_snippet_and_the_project_is_listed(cli: CliRunner) -> None:
    result = cli.invoke(main, ["projects", "create", "Shop", "--origin", "https://shop.example/"])
    assert result.exit_code == 0, result.output
    (project,) = _projects(cli)
    key = project["api_keys"][0]  # type: ignore[index]
    assert f"track('config', '{key}');" in result.output
    assert project["allowed_origins"] == ["https://shop.example"]
    table = cli.invoke(main, ["projects", "list"]).output
    assert "Shop" in table and "https://shop.example" in table


def test_set_rotate_disable_and_show(cli: CliRunner) -> None:
    cli.invoke(main, ["projects", "create", "Shop"])
    (project,) = _projects(cli)
    pid, old_key = str(project["project_id"]), project["api_keys"][0]  # type: ignore[index]
    result = cli.invoke(
        main, ["projects", "set", pid, "--sample-rate", "0.5", "--no-autotrack-clicks", "--origin", "https://a.example"]
    )
    assert result.exit_code == 0, result.output
    result = cli.invoke(main, ["projects", "rotate-key", pid])
    assert result.exit_code == 0 and "new API key: tf_pk_" in result.output
    cli.invoke(main, ["projects", "disable", pid])
    (project,) = _projects(cli)
    assert project["tracker"]["sample_rate"] == 0.5  # type: ignore[index]
    assert project["tracker"]["auto_track_clicks"] is False  # type: ignore[index]
    assert project["allowed_origins"] == ["https://a.example"]
    assert old_key not in project["api_keys"]  # type: ignore[operator]
    assert project["enabled"] is False
    shown = cli.invoke(main, ["projects", "show", pid]).output
    assert "enabled  no" in shown


def test_rotate_read_token_replaces_it_with_one_naming_the_project(cli: CliRunner) -> None:
    cli.invoke(main, ["projects", "create", "Shop"])
    (project,) = _projects(cli)
    result = cli.invoke(main, ["projects", "rotate-read-token", str(project["project_id"])])
    assert result.exit_code == 0, result.output
    token = result.output.split("new read token: ")[1].split()[0]
    (after,) = _projects(cli)
    assert after["read_token"] == token != project["read_token"]
    assert token.startswith(f"tf_rt_{project['project_id']}.")


def test_unknown_project_and_missing_table_name_say_what_to_do(cli: CliRunner) -> None:
    result = cli.invoke(main, ["projects", "show", "nope"])
    assert result.exit_code != 0
    assert "trackflow projects list" in result.output
    result = cli.invoke(main, ["projects", "init-table"])
    assert result.exit_code != 0
    assert "TRACKFLOW_PROJECTS_TABLE" in result.output


def test_init_table_creates_the_dynamodb_table_in_an_emulator(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch, moto_server: str
) -> None:
    monkeypatch.setenv("TRACKFLOW_PROJECTS_TABLE", "trackflow-projects")
    result = cli.invoke(main, ["projects", "init-table"])
    assert result.exit_code == 0, result.output
    runtime.reset()
    assert cli.invoke(main, ["projects", "create", "Cloud shop"]).exit_code == 0
    runtime.reset()
    (project,) = _projects(cli)
    assert project["name"] == "Cloud shop"
