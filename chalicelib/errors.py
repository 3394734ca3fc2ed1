"""TrackFlow's exceptions, each carrying what a caller needs to answer or retry.

::

    TrackflowError                 base; ``code`` is stable, ``status`` is the HTTP answer
    ├── ConfigError                a setting is missing or malformed (fails at start)
    ├── RequestError               the client sent something we refuse (4xx)
    │   ├── UnauthorizedError      no project has this API key (401)
    │   ├── ForbiddenError         the project is disabled, or the origin not allowed (403)
    │   ├── PayloadTooLargeError   body or batch over a limit (413)
    │   └── UnsupportedMediaTypeError   neither JSON nor text/plain (415)
    ├── ServiceUnavailableError         a backing service is down; retry later (503)
    │   └── ProduceError           Kafka did not acknowledge in time
    ├── StorageError               ClickHouse failed a write (the batch is retried)
    │   └── RefusedDataError       ClickHouse refused the rows themselves (retrying cannot help)
    └── EngineLockedError          another process holds the embedded chDB directory
"""

from __future__ import annotations


class TrackflowError(Exception):
    """Base class. ``code`` is a stable machine-readable name; ``status`` an HTTP status."""

    code = "internal"
    status = 500

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def to_dict(self) -> dict[str, object]:
        body: dict[str, object] = {"code": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        return {"error": body}


class ConfigError(TrackflowError):
    """A setting is missing or malformed; the message says which variable to set."""

    code = "config"


class RequestError(TrackflowError):
    """The request is malformed; answered with a 4xx naming the field."""

    code = "bad_request"
    status = 400

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message, field=field)
        if code is not None:
            self.code = code


class UnauthorizedError(RequestError):
    code = "unknown_key"
    status = 401


class ForbiddenError(RequestError):
    code = "forbidden"
    status = 403


class NotFoundError(RequestError):
    """What the request names does not exist (a project, a goal, a funnel)."""

    code = "not_found"
    status = 404


class PayloadTooLargeError(RequestError):
    code = "too_large"
    status = 413


class UnsupportedMediaTypeError(RequestError):
    code = "unsupported_media_type"
    status = 415


class ServiceUnavailableError(TrackflowError):
    """A backing service is unreachable; the client should retry after ``retry_after`` s."""

    code = "unavailable"
    status = 503

    def __init__(self, message: str, *, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ProduceError(ServiceUnavailableError):
    code = "produce_failed"


class StorageError(TrackflowError):
    """A ClickHouse write failed; raising it makes the trigger retry the whole batch."""

    code = "storage"


class RefusedDataError(StorageError):
    """ClickHouse (or the client serialising for it) refused a value in the rows; ``reason`` says which."""

    code = "refused_data"

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class EngineLockedError(TrackflowError):
    """The embedded chDB directory is held by another process."""

    code = "engine_locked"
