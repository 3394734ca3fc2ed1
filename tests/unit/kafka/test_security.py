"""Kafka security settings: checked when read, and said in each client library's words."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from chalicelib.errors import ConfigError
from chalicelib.kafka.diagnosis import ClientErrors
from chalicelib.kafka.security import KafkaSecurity, load, msk_iam_token
from chalicelib.settings import load_settings


def read(env: dict[str, str], region: str | None = None) -> KafkaSecurity:
    return load(lambda name: env.get(name) or None, region)


def test_plaintext_is_the_default_and_adds_nothing_but_the_protocol() -> None:
    security = load_settings({}).kafka_security
    assert security == KafkaSecurity()
    assert security.confluent() == {"security.protocol": "plaintext"}
    assert security.kafka_python() == {"security_protocol": "PLAINTEXT"}


def test_sasl_ssl_scram_in_both_libraries_words(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("---")
    security = read(
        {
            "KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
            "KAFKA_SASL_MECHANISM": "scram-sha-512",
            "KAFKA_SSL_CA_FILE": str(ca),
            "KAFKA_SASL_USERNAME": "u",
            "KAFKA_SASL_PASSWORD": "hunter2",
        }
    )
    assert security.confluent() == {
        "security.protocol": "sasl_ssl",
        "ssl.ca.location": str(ca),
        "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": "u",
        "sasl.password": "hunter2",
    }
    assert security.kafka_python() == {
        "security_protocol": "SASL_SSL",
        "ssl_check_hostname": True,
        "ssl_cafile": str(ca),
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "u",
        "sasl_plain_password": "hunter2",
    }
    assert "hunter2" not in repr(security)
    assert security.describe() == "SASL_SSL SCRAM-SHA-512 (user u)"


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "KAFKA_SASL_MECHANISM"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "GSSAPI"}, "KAFKA_SASL_MECHANISM"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "PLAIN"}, "KAFKA_SASL_SECRET_ARN"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "OAUTHBEARER"}, "AWS_DEFAULT_REGION"),
        ({"KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_SASL_USERNAME": "u"}, "SASL_SSL"),
        ({"KAFKA_SSL_CA_FILE": "/nonexistent/ca.pem", "KAFKA_SECURITY_PROTOCOL": "SSL"}, "is not a file"),
    ],
)
def test_incomplete_or_contradictory_settings_name_what_to_set(env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        read(env)


def test_settings_carry_the_security_and_the_region(monkeypatch: pytest.MonkeyPatch) -> None:
    security = load_settings(
        {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "OAUTHBEARER", "AWS_REGION": "eu-west-1"}
    ).kafka_security
    assert security.region == "eu-west-1"
    assert security.describe() == "SASL_SSL OAUTHBEARER (MSK IAM)"


def test_msk_iam_signs_a_token_from_the_aws_credentials_for_both_libraries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    security = read({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "OAUTHBEARER"}, region="eu-west-1")
    token, expiry = msk_iam_token("eu-west-1")
    assert token and expiry > 0
    conf = security.confluent()
    assert conf["sasl.mechanisms"] == "OAUTHBEARER"
    signed, _ = conf["oauth_cb"]("")
    assert signed  # a presigned URL, base64url: signed locally, no network
    assert security.kafka_python()["sasl_oauth_token_provider"].token()


class FakeSecrets:
    def __init__(self, value: Any) -> None:
        self.value = value
        self.calls = 0

    def get_secret_value(self, SecretId: str) -> dict[str, str]:  # noqa: N803 (boto3's name)
        self.calls += 1
        if isinstance(self.value, Exception):
            raise self.value
        return {"SecretString": self.value}


def test_credentials_from_a_secret_are_fetched_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("chalicelib.secrets._cache", {})
    secrets = FakeSecrets(json.dumps({"username": "msk-user", "password": "s3cret"}))
    security = read(
        {
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KAFKA_SASL_SECRET_ARN": "arn:1",
        }
    )
    assert security.confluent(lambda: secrets)["sasl.password"] == "s3cret"
    assert security.kafka_python(lambda: secrets)["sasl_plain_username"] == "msk-user"
    assert secrets.calls == 1


@pytest.mark.parametrize("value", ["not json", json.dumps({"user": "x"}), RuntimeError("AccessDenied")])
def test_an_unusable_secret_is_a_config_error_naming_it(monkeypatch: pytest.MonkeyPatch, value: Any) -> None:
    monkeypatch.setattr("chalicelib.secrets._cache", {})
    security = read(
        {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_SASL_SECRET_ARN": "arn:bad"}
    )
    with pytest.raises(ConfigError, match="arn:bad"):
        security.confluent(lambda: FakeSecrets(value))


def test_client_errors_name_the_failure_the_same_from_the_log_and_the_callback() -> None:
    errors = ClientErrors(read({}))
    errors.saw("3/3 brokers are down")
    assert errors.reason() == "3/3 brokers are down"
    errors.saw(
        "FAIL [rdkafka#producer-1] [thrd:sasl_plaintext://h:9094/bootstrap]: sasl_plaintext://h:9094/bootstrap: "
        "Disconnected: connection closed by peer: receive 0 after POLLIN (after 2ms in state APIVERSION_QUERY)"
    )
    assert "set KAFKA_SECURITY_PROTOCOL to SSL or SASL_SSL" in (errors.reason() or "")
    errors.saw("1/1 brokers are down")  # a summary keeps the specific reason
    assert "SASL_SSL" in (errors.reason() or "")
    errors.saw(
        "sasl_ssl://h:9094/bootstrap: SASL authentication error: Authentication failed (after 9ms in state AUTH_REQ)"
    )
    assert errors.reason() == "authentication failed (PLAINTEXT): SASL authentication error: Authentication failed"


def test_informational_log_lines_are_no_reason() -> None:
    errors = ClientErrors(read({}))
    errors.saw("CONFWARN [rdkafka#producer-1] [thrd:app]: Configuration property x is deprecated", logged=True)
    assert errors.reason() is None
    errors.saw("1/1 brokers are down")
    assert errors.reason() == "1/1 brokers are down"
