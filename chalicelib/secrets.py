"""Secrets Manager reads, once per process, with bounded waits.

The deployed functions keep no secret in their environment: the hash salt,
the ClickHouse password and the Kafka SASL credentials are secret ARNs
(``TRACKFLOW_SALT_SECRET_ARN``, ``CLICKHOUSE_PASSWORD_SECRET_ARN``,
``KAFKA_SASL_SECRET_ARN``), read the first time they are needed and kept for
the life of the instance. A Secrets Manager that does not answer costs one
bounded wait and a :class:`~chalicelib.errors.ConfigError` naming the secret.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from chalicelib.errors import ConfigError

# One attempt after the first, each bounded, so a cold start never hangs on
# Secrets Manager (boto3's defaults are 60 s reads and several retries).
CONNECT_TIMEOUT_S = 1.0
READ_TIMEOUT_S = 2.0
MAX_ATTEMPTS = 2

SecretsClient = Callable[[], Any]

_cache: dict[str, str] = {}
_lock = threading.Lock()


def default_client(region: str | None) -> Any:
    """A Secrets Manager client with explicit, short timeouts and one retry."""
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=READ_TIMEOUT_S,
        retries={"max_attempts": MAX_ATTEMPTS, "mode": "standard"},
    )
    return boto3.client("secretsmanager", region_name=region, config=config)


def read(arn: str, *, region: str | None = None, client: SecretsClient | None = None, purpose: str = "a secret") -> str:
    """The secret's string, fetched once per process; ConfigError (naming ``arn`` and ``purpose``) when unreadable."""
    with _lock:
        if arn in _cache:
            return _cache[arn]
    make = client or (lambda: default_client(region))
    try:
        answer = make().get_secret_value(SecretId=arn)
        value = answer["SecretString"]
    except Exception as exc:  # botocore raises many types; each means "no secret"
        raise ConfigError(f"cannot read {purpose} from {arn}: {type(exc).__name__}: {exc}") from exc
    with _lock:
        _cache[arn] = value
    return str(value)


def read_json(arn: str, keys: tuple[str, ...], **options: Any) -> dict[str, str]:
    """A secret holding a JSON object with ``keys``; ConfigError saying what it must hold otherwise."""
    raw = read(arn, **options)
    try:
        value = json.loads(raw)
        return {key: str(value[key]) for key in keys}
    except (KeyError, TypeError, ValueError) as exc:
        shape = ", ".join(f'"{key}": ...' for key in keys)
        raise ConfigError(f"the secret {arn} must hold JSON {{{shape}}}") from exc


def read_password(arn: str, **options: Any) -> str:
    """A password kept as the plain string, or as JSON with a ``password`` key (what RDS-style secrets hold)."""
    raw = read(arn, **options)
    if raw.lstrip().startswith("{"):
        return read_json(arn, ("password",), **options)["password"]
    return raw


def forget() -> None:
    """Drop every cached secret (tests; a rotated secret is read again by a new instance)."""
    with _lock:
        _cache.clear()
