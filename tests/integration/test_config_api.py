"""GET /v1/config/{api_key} through chalice.test.Client, on the SQLite store."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from chalice.test import Client

import app
from chalicelib import runtime
from chalicelib.projects import SqliteProjectStore, TrackerSettings, new_project
from chalicelib.settings import load_settings

pytestmark = pytest.mark.integration


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteProjectStore]:
    runtime.reset()
    projects = SqliteProjectStore(tmp_path / "projects.sqlite3")
    runtime.configure(settings=load_settings({"TRACKFLOW_DATA_DIR": str(tmp_path)}), projects=projects)
    yield projects
    runtime.reset()


def test_answers_the_projects_tracker_settings_with_etag_and_cache_control(store: SqliteProjectStore) -> None:
    project = replace(new_project("Shop"), tracker=TrackerSettings(auto_track_clicks=False, sample_rate=0.25))
    store.put(project)
    with Client(app.app) as client:
        response = client.http.get(f"/v1/config/{project.api_keys[0]}")
    assert response.status_code == 200
    assert response.json_body == {
        "enabled": True,
        "autoTrackPageViews": True,
        "autoTrackClicks": False,
        "autoTrackErrors": True,
        "sampleRate": 0.25,
        "environment": "production",
    }
    assert response.headers["Cache-Control"] == "public, max-age=300"
    assert response.headers["ETag"].startswith('"')


def test_a_matching_if_none_match_gets_304_and_a_changed_project_a_new_etag(store: SqliteProjectStore) -> None:
    project = new_project("Shop")
    store.put(project)
    key = project.api_keys[0]
    with Client(app.app) as client:
        etag = client.http.get(f"/v1/config/{key}").headers["ETag"]
        again = client.http.get(f"/v1/config/{key}", headers={"If-None-Match": etag})
        assert again.status_code == 304
        assert again.body == b""
        store.put(replace(project, tracker=TrackerSettings(sample_rate=0.5)))
        changed = client.http.get(f"/v1/config/{key}", headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["ETag"] != etag


def test_an_unknown_key_gets_a_404_json_error(store: SqliteProjectStore) -> None:
    store.put(new_project("Shop"))
    with Client(app.app) as client:
        response = client.http.get("/v1/config/tf_pk_unknown")
    assert response.status_code == 404
    assert response.json_body["error"]["code"] == "unknown_key"


def test_a_disabled_project_is_answered_enabled_false_so_the_tracker_stops(store: SqliteProjectStore) -> None:
    project = new_project("Shop")
    store.put(replace(project, enabled=False))
    with Client(app.app) as client:
        response = client.http.get(f"/v1/config/{project.api_keys[0]}")
    assert response.status_code == 200
    assert response.json_body["enabled"] is False
    assert "max-age" in response.headers["Cache-Control"]


def test_the_seed_development_key_is_served_in_dev(store: SqliteProjectStore) -> None:
    with Client(app.app) as client:
        response = client.http.get("/v1/config/YOUR_API_KEY")
    assert response.status_code == 200
    assert response.json_body["environment"] == "development"
