"""chalicelib.secrets and the settings that read through it: each secret fetched once, errors naming it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib import secrets
from chalicelib.errors import ConfigError
from chalicelib.settings import load_settings

PROD = {"TRACKFLOW_STAGE": "prod", "KAFKA_BOOTSTRAP_SERVERS": "k:9092", "CLICKHOUSE_URL": "http://ch:8123"}


class FakeSecrets:
    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values
        self.calls: list[str] = []

    def get_secret_value(self, SecretId: str) -> dict[str, str]:  # noqa: N803 (boto3's name)
        self.calls.append(SecretId)
        value = self.values[SecretId]
        if isinstance(value, Exception):
            raise value
        return {"SecretString": value}


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("chalicelib.secrets._cache", {})


def test_a_secret_is_fetched_once_per_process() -> None:
    fake = FakeSecrets({"arn:salt": "s" * 40})
    assert secrets.read("arn:salt", client=lambda: fake) == "s" * 40
    assert secrets.read("arn:salt", client=lambda: fake) == "s" * 40
    assert fake.calls == ["arn:salt"]


def test_a_password_is_a_plain_string_or_json_with_a_password_key() -> None:
    fake = FakeSecrets({"arn:plain": "pw1", "arn:json": json.dumps({"username": "u", "password": "pw2"})})
    assert secrets.read_password("arn:plain", client=lambda: fake) == "pw1"
    assert secrets.read_password("arn:json", client=lambda: fake) == "pw2"


def test_an_unreadable_secret_names_it_and_what_it_was_for() -> None:
    fake = FakeSecrets({"arn:x": RuntimeError("AccessDeniedException")})
    with pytest.raises(ConfigError, match=r"cannot read the hash salt from arn:x: RuntimeError: AccessDenied"):
        secrets.read("arn:x", client=lambda: fake, purpose="the hash salt")


def test_prod_takes_the_salt_and_the_clickhouse_password_as_secret_arns(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeSecrets({"arn:salt": "from-the-stack-0123456789", "arn:ch": "ch-pw"})
    monkeypatch.setattr(secrets, "default_client", lambda region: fake)
    settings = load_settings(
        {**PROD, "TRACKFLOW_SALT_SECRET_ARN": "arn:salt", "CLICKHOUSE_PASSWORD_SECRET_ARN": "arn:ch"}
    )
    assert fake.calls == []  # nothing fetched until needed: ingest never reads the salt
    assert settings.resolved_salt_secret() == b"from-the-stack-0123456789"
    assert settings.clickhouse.resolved_password() == "ch-pw"
    assert load_settings({**PROD, "TRACKFLOW_SALT_SECRET": "x" * 20}).clickhouse.resolved_password() == ""
