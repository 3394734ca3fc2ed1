"""Project stores: the same behaviour from SQLite and from DynamoDB (moto), plus the cache and the dev key."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from chalicelib.projects import (
    DEV_API_KEY,
    CachedProjectStore,
    DynamoProjectStore,
    ProjectStore,
    SqliteProjectStore,
    TrackerSettings,
    create_dynamo_table,
    new_project,
    resolve_key,
    rotate_key,
)


@pytest.fixture(params=["sqlite", "dynamodb"])
def store(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ProjectStore]:
    if request.param == "sqlite":
        yield SqliteProjectStore(tmp_path / "projects.sqlite3")
        return
    import boto3
    from moto import mock_aws

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield DynamoProjectStore(create_dynamo_table(boto3.resource("dynamodb"), "trackflow-projects"))


def test_a_stored_project_is_found_by_id_and_by_each_key(store: ProjectStore) -> None:
    project = new_project("Shop", allowed_origins=["https://shop.example/"])
    store.put(project)
    assert store.get(project.project_id) == project
    assert store.by_key(project.api_keys[0]) == project
    assert project.allowed_origins == ("https://shop.example",)
    assert store.by_key("tf_pk_nope") is None
    assert store.get("nope") is None


def test_rotating_a_key_retires_the_old_one_unless_kept(store: ProjectStore) -> None:
    project = new_project("Shop")
    store.put(project)
    old = project.api_keys[0]
    rotated, new = rotate_key(project, keep_old=True)
    store.put(rotated)
    assert store.by_key(old) == rotated
    assert store.by_key(new) == rotated
    replaced, newest = rotate_key(rotated, keep_old=False)
    store.put(replaced)
    assert store.by_key(old) is None
    assert store.by_key(new) is None
    assert store.by_key(newest) == replaced


def test_updates_and_listing(store: ProjectStore) -> None:
    first, second = new_project("A"), new_project("B")
    store.put(first)
    store.put(second)
    store.put(replace(first, enabled=False, tracker=TrackerSettings(sample_rate=0.5)))
    listed = {p.project_id: p for p in store.all()}
    assert set(listed) == {first.project_id, second.project_id}
    assert listed[first.project_id].enabled is False
    assert listed[first.project_id].tracker.sample_rate == 0.5


def test_the_dev_key_works_in_dev_stages_only(store: ProjectStore) -> None:
    assert resolve_key(store, DEV_API_KEY, stage="dev") is not None
    assert resolve_key(store, DEV_API_KEY, stage="test") is not None
    assert resolve_key(store, DEV_API_KEY, stage="prod") is None


class CountingStore:
    def __init__(self, inner: ProjectStore) -> None:
        self.inner = inner
        self.lookups = 0

    def by_key(self, api_key: str) -> Any:
        self.lookups += 1
        return self.inner.by_key(api_key)

    def get(self, project_id: str) -> Any:
        return self.inner.get(project_id)

    def put(self, project: Any) -> None:
        self.inner.put(project)

    def all(self) -> list[Any]:
        return self.inner.all()


def test_the_cache_answers_repeated_lookups_until_the_ttl_passes(tmp_path: Path) -> None:
    counting = CountingStore(SqliteProjectStore(tmp_path / "p.sqlite3"))
    now = [0.0]
    cached = CachedProjectStore(counting, ttl_s=30, clock=lambda: now[0])
    project = new_project("Shop")
    cached.put(project)
    for _ in range(5):
        assert cached.by_key(project.api_keys[0]) == project
        assert cached.by_key("unknown") is None
    assert counting.lookups == 2
    now[0] = 31.0
    cached.by_key(project.api_keys[0])
    assert counting.lookups == 3


def test_origins_are_checked_only_when_listed() -> None:
    open_project = new_project("Open")
    locked = new_project("Locked", allowed_origins=["https://shop.example"])
    assert open_project.allows_origin(None)
    assert open_project.allows_origin("https://anything.example")
    assert locked.allows_origin("https://shop.example")
    assert not locked.allows_origin("https://evil.example")
    assert not locked.allows_origin(None)


@pytest.mark.parametrize("text", ["k" * 3000, "\ud800", "ü" * 1500, ""])
def test_ids_and_keys_no_store_could_hold_are_simply_unknown(store: ProjectStore, text: str) -> None:
    assert store.get(text) is None
    assert store.by_key(text) is None


def test_an_unreachable_dynamodb_is_a_503_within_seconds() -> None:
    import time

    import boto3
    from botocore.config import Config

    from chalicelib.errors import ServiceUnavailableError

    quick = Config(connect_timeout=1, read_timeout=1, retries={"max_attempts": 1})
    dynamodb = boto3.resource(
        "dynamodb",
        endpoint_url="http://127.0.0.1:9",
        region_name="us-east-1",
        config=quick,
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )
    started = time.monotonic()
    with pytest.raises(ServiceUnavailableError):
        DynamoProjectStore(dynamodb.Table("t")).get("p")
    assert time.monotonic() - started < 5
