"""How every Kafka client authenticates: TLS, SASL (SCRAM, PLAIN) and MSK IAM.

One :class:`KafkaSecurity` is read from the settings once; each client library
gets it in its own words: :meth:`KafkaSecurity.confluent` (librdkafka's
``security.protocol``, ``sasl.mechanisms``, ...) for the confluent producer and
the health probe, :meth:`KafkaSecurity.kafka_python` (``security_protocol``,
``sasl_mechanism``, ...) for the kafka-python producer, the trigger runner's
consumer and the topic admin.

Credentials come from ``KAFKA_SASL_USERNAME``/``KAFKA_SASL_PASSWORD`` or from a
Secrets Manager secret (``KAFKA_SASL_SECRET_ARN``, the JSON
``{"username": ..., "password": ...}`` that MSK's SCRAM secrets hold), fetched
once per process with bounded waits (:mod:`chalicelib.secrets`). ``OAUTHBEARER`` means MSK IAM: a token
signed from the function's AWS credentials by ``aws-msk-iam-sasl-signer-python``,
refreshed by the client libraries before it expires.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chalicelib import secrets
from chalicelib.errors import ConfigError

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN", "OAUTHBEARER")


@dataclass(frozen=True)
class KafkaSecurity:
    """The security settings of the Kafka clients; PLAINTEXT (none) by default."""

    protocol: str = "PLAINTEXT"
    mechanism: str | None = None
    ca_file: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    secret_arn: str | None = None
    region: str | None = None

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.protocol.endswith("SSL")

    def describe(self) -> str:
        """One line for logs and ``trackflow doctor``, without secrets."""
        if not self.sasl:
            return self.protocol
        source = (
            "MSK IAM"
            if self.mechanism == "OAUTHBEARER"
            else ("a Secrets Manager secret" if self.secret_arn else f"user {self.username}")
        )
        return f"{self.protocol} {self.mechanism} ({source})"

    # -- credentials ---------------------------------------------------------------------------------------------
    def credentials(self, secrets_client: Callable[[], Any] | None = None) -> tuple[str, str]:
        """The SASL username and password: from the settings, or the secret (fetched once)."""
        if self.username is not None and self.password is not None:
            return self.username, self.password
        if self.secret_arn is None:
            raise ConfigError(
                f"KAFKA_SASL_MECHANISM={self.mechanism} needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD, or KAFKA_SASL_SECRET_ARN"
            )
        found = secrets.read_json(
            self.secret_arn,
            ("username", "password"),
            region=self.region,
            client=secrets_client,
            purpose="the Kafka credentials",
        )
        return found["username"], found["password"]

    # -- per library ---------------------------------------------------------------------------------------------
    def confluent(self, secrets_client: Callable[[], Any] | None = None) -> dict[str, Any]:
        """librdkafka settings (confluent-kafka producers, consumers and admin clients)."""
        conf: dict[str, Any] = {"security.protocol": self.protocol.lower()}
        if self.tls and self.ca_file:
            conf["ssl.ca.location"] = self.ca_file
        if self.sasl:
            conf["sasl.mechanisms"] = self.mechanism
            if self.mechanism == "OAUTHBEARER":
                region = self._region()
                conf["oauth_cb"] = lambda _config: msk_iam_token(region)
            else:
                conf["sasl.username"], conf["sasl.password"] = self.credentials(secrets_client)
        return conf

    def kafka_python(self, secrets_client: Callable[[], Any] | None = None) -> dict[str, Any]:
        """kafka-python settings (its producer, consumer and admin client)."""
        conf: dict[str, Any] = {"security_protocol": self.protocol}
        if self.tls:
            conf["ssl_check_hostname"] = True
            if self.ca_file:
                conf["ssl_cafile"] = self.ca_file
        if self.sasl:
            conf["sasl_mechanism"] = self.mechanism
            if self.mechanism == "OAUTHBEARER":
                conf["sasl_oauth_token_provider"] = _MskTokenProvider(self._region())
            else:
                conf["sasl_plain_username"], conf["sasl_plain_password"] = self.credentials(secrets_client)
        return conf

    def _region(self) -> str:
        if not self.region:
            raise ConfigError(
                "KAFKA_SASL_MECHANISM=OAUTHBEARER (MSK IAM) needs AWS_DEFAULT_REGION (or a profile with a region)"
            )
        return self.region


def msk_iam_token(region: str) -> tuple[str, float]:
    """An MSK IAM token and its expiry (seconds since the epoch), signed from the AWS credentials at hand."""
    from aws_msk_iam_sasl_signer import MSKAuthTokenProvider

    token, expiry_ms = MSKAuthTokenProvider.generate_auth_token(region)
    return token, expiry_ms / 1000


class _MskTokenProvider:
    """kafka-python's token provider interface (``token()``), for MSK IAM."""

    def __init__(self, region: str) -> None:
        self.region = region

    def token(self) -> str:
        return msk_iam_token(self.region)[0]

    def extensions(self) -> dict[str, str]:
        return {}


def load(get: Callable[[str], str | None], region: str | None) -> KafkaSecurity:
    """The security settings from ``KAFKA_*`` variables (``get`` returns None for unset); checked."""
    protocol = (get("KAFKA_SECURITY_PROTOCOL") or "PLAINTEXT").upper()
    if protocol not in PROTOCOLS:
        raise ConfigError(f"KAFKA_SECURITY_PROTOCOL={protocol!r} is unknown; set it to one of {', '.join(PROTOCOLS)}")
    mechanism = get("KAFKA_SASL_MECHANISM")
    mechanism = mechanism.upper() if mechanism else None
    username, password, secret_arn = (
        get("KAFKA_SASL_USERNAME"),
        get("KAFKA_SASL_PASSWORD"),
        get("KAFKA_SASL_SECRET_ARN"),
    )
    ca_file = get("KAFKA_SSL_CA_FILE")
    if protocol.startswith("SASL_"):
        if mechanism not in MECHANISMS:
            raise ConfigError(
                f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_MECHANISM, one of {', '.join(MECHANISMS)}"
                + (f" (not {mechanism!r})" if mechanism else "")
            )
        if mechanism == "OAUTHBEARER" and not region:
            raise ConfigError(
                "KAFKA_SASL_MECHANISM=OAUTHBEARER (MSK IAM) needs AWS_DEFAULT_REGION (or a profile with a region)"
            )
        if mechanism != "OAUTHBEARER" and secret_arn is None and (username is None or password is None):
            raise ConfigError(
                f"KAFKA_SASL_MECHANISM={mechanism} needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD, "
                "or KAFKA_SASL_SECRET_ARN (a Secrets Manager secret holding them)"
            )
    elif mechanism or username or secret_arn:
        raise ConfigError(
            f"SASL settings are set but KAFKA_SECURITY_PROTOCOL={protocol}: set it to SASL_SSL (or SASL_PLAINTEXT)"
        )
    if ca_file is not None and not Path(ca_file).is_file():
        raise ConfigError(
            f"KAFKA_SSL_CA_FILE={ca_file!r} is not a file; give the PEM file of the CA that signed the brokers"
        )
    if ca_file is not None and not protocol.endswith("SSL"):
        raise ConfigError(
            f"KAFKA_SSL_CA_FILE is set but KAFKA_SECURITY_PROTOCOL={protocol} has no TLS: use SSL or SASL_SSL"
        )
    return KafkaSecurity(
        protocol=protocol,
        mechanism=mechanism if protocol.startswith("SASL_") else None,
        ca_file=ca_file,
        username=username,
        password=password,
        secret_arn=secret_arn,
        region=region,
    )
