"""Projects and their API keys: the model, two stores behind one interface, a TTL cache.

A project has an id, a name, public API keys (they sit in web pages: they
identify a project, they don't authenticate anyone), allowed origins, tracker
settings, a bot policy and a secret read token for the stats API.

- :class:`SqliteProjectStore` — the embedded default, a file in the data directory.
- :class:`DynamoProjectStore` — deployed stages; one table, items ``PROJECT#<id>``
  and ``KEY#<api key>`` (a key item points at its project). boto3 honours
  ``AWS_ENDPOINT_URL`` for emulators.
- :class:`CachedProjectStore` — wraps either, so a warm Lambda looks a key up
  once per TTL instead of once per request.

``DEV_API_KEY`` (the seed's ``YOUR_API_KEY``) maps to a built-in development
project in the dev and test stages only.
"""

from __future__ import annotations

import hmac
import json
import secrets
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from chalicelib.errors import ServiceUnavailableError
from chalicelib.goals import Funnel, Goal
from chalicelib.goals import from_json as goals_from_json

DEV_API_KEY = "YOUR_API_KEY"
DEV_PROJECT_ID = "development"
READ_TOKEN_PREFIX = "tf_rt_"
ADMIN_TOKEN_PREFIX = "tf_at_"
# Longest project id and API key looked up at all: anything longer is unknown
# (DynamoDB refuses keys past its limits with an error, not an empty answer).
MAX_PROJECT_ID_LENGTH = 128
MAX_DYNAMO_KEY_BYTES = 2048  # DynamoDB's limit for a partition key
DEV_STAGES = ("dev", "test")
BOT_POLICIES = ("drop", "keep")
DEFAULT_CACHE_TTL_S = 30.0


@dataclass(frozen=True)
class TrackerSettings:
    """What the tracker may do for a project (served by the config function)."""

    auto_track_page_views: bool = True
    auto_track_clicks: bool = True
    auto_track_errors: bool = True
    sample_rate: float = 1.0
    environment: str = "production"

    def to_public(self, *, enabled: bool) -> dict[str, Any]:
        """The JSON the tracker reads from ``GET /v1/config/{key}``."""
        return {
            "enabled": enabled,
            "autoTrackPageViews": self.auto_track_page_views,
            "autoTrackClicks": self.auto_track_clicks,
            "autoTrackErrors": self.auto_track_errors,
            "sampleRate": self.sample_rate,
            "environment": self.environment,
        }


@dataclass(frozen=True)
class Project:
    project_id: str
    name: str
    api_keys: tuple[str, ...]
    read_token: str
    allowed_origins: tuple[str, ...] = ()
    tracker: TrackerSettings = field(default_factory=TrackerSettings)
    bot_policy: str = "drop"
    honor_gpc: bool = True
    rate_limit: float = 1000.0  # events per second per function instance; 0 = none
    enabled: bool = True
    created_at: int = 0
    keep_params: tuple[str, ...] = ()  # query parameters kept besides the defaults (chalicelib.collect.privacy)
    retention_days: int = 0  # whole UTC days kept; 0: TRACKFLOW_RETENTION_DAYS (chalicelib.storage.retention)
    admin_token: str = ""  # erases people's data (DELETE /v1/projects/{id}/people); never the read token
    goals: tuple[Goal, ...] = ()  # conversions (chalicelib.goals)
    funnels: tuple[Funnel, ...] = ()  # saved funnels

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Project:
        data = json.loads(text)
        data["api_keys"] = tuple(data["api_keys"])
        data["allowed_origins"] = tuple(data["allowed_origins"])
        data["tracker"] = TrackerSettings(**data["tracker"])
        data["keep_params"] = tuple(data.get("keep_params", ()))
        data["goals"], data["funnels"] = goals_from_json(data.get("goals", []), data.get("funnels", []))
        return cls(**data)

    def allows_origin(self, origin: str | None) -> bool:
        """No list means any origin; otherwise the Origin header must be on it."""
        if not self.allowed_origins:
            return True
        return origin is not None and origin.rstrip("/") in self.allowed_origins


def new_api_key() -> str:
    return "tf_pk_" + secrets.token_urlsafe(18)


def new_read_token(project_id: str) -> str:
    """A read token naming its project, so a token for the wrong project can be told apart."""
    return f"{READ_TOKEN_PREFIX}{project_id}.{secrets.token_urlsafe(24)}"


def new_admin_token(project_id: str) -> str:
    """An admin token naming its project, like a read token but for changes to stored data."""
    return f"{ADMIN_TOKEN_PREFIX}{project_id}.{secrets.token_urlsafe(24)}"


def token_project_id(token: str, prefix: str) -> str:
    """The project a ``<prefix><project>.<secret>`` token names (not checked), or "" for any other text."""
    project_id, dot, _ = token.removeprefix(prefix).partition(".")
    return project_id if token.startswith(prefix) and dot else ""


def project_for_read_token(store: ProjectStore, token: str) -> Project | None:
    """The project this read token opens, or None."""
    project_id = token_project_id(token, READ_TOKEN_PREFIX)
    if not project_id or len(project_id) > MAX_PROJECT_ID_LENGTH:
        return None
    project = store.get(project_id)
    if project is None or not project.read_token or not tokens_equal(project.read_token, token):
        return None
    return project


def tokens_equal(expected: str, given: str) -> bool:
    """Constant-time comparison of any two strings (``hmac.compare_digest`` refuses non-ASCII text)."""
    return hmac.compare_digest(expected.encode("utf-8", "surrogatepass"), given.encode("utf-8", "surrogatepass"))


def new_project(name: str, *, allowed_origins: Iterable[str] = (), now: Callable[[], float] = time.time) -> Project:
    project_id = uuid.uuid4().hex[:12]
    return Project(
        project_id=project_id,
        name=name,
        api_keys=(new_api_key(),),
        read_token=new_read_token(project_id),
        admin_token=new_admin_token(project_id),
        allowed_origins=tuple(o.rstrip("/") for o in allowed_origins),
        created_at=int(now()),
    )


@lru_cache(maxsize=1)
def dev_project() -> Project:
    """The built-in project behind ``YOUR_API_KEY`` in development."""
    return Project(
        project_id=DEV_PROJECT_ID,
        name="Development",
        api_keys=(DEV_API_KEY,),
        read_token="",
        tracker=TrackerSettings(environment="development"),
        rate_limit=0,  # local load tests and benchmarks go through it
        bot_policy="keep",  # curl and scripts are how people try it out: keep them, flagged is_bot
    )


class ProjectStore(Protocol):
    def get(self, project_id: str) -> Project | None: ...

    def by_key(self, api_key: str) -> Project | None: ...

    def put(self, project: Project) -> None: ...

    def all(self) -> list[Project]: ...


class SqliteProjectStore:
    """Projects in one SQLite file; safe to share between threads."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS projects (id TEXT PRIMARY KEY, doc TEXT NOT NULL)")
            self._db.execute("CREATE TABLE IF NOT EXISTS api_keys (key TEXT PRIMARY KEY, project_id TEXT NOT NULL)")

    def _doc(self, sql: str, value: str) -> Project | None:
        if not _storable(value):
            return None
        with self._lock:
            row = self._db.execute(sql, (value,)).fetchone()
        return None if row is None else Project.from_json(row[0])

    def get(self, project_id: str) -> Project | None:
        return self._doc("SELECT doc FROM projects WHERE id = ?", project_id)

    def by_key(self, api_key: str) -> Project | None:
        return self._doc("SELECT p.doc FROM api_keys k JOIN projects p ON p.id = k.project_id WHERE k.key = ?", api_key)

    def put(self, project: Project) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.execute(
                    "INSERT OR REPLACE INTO projects (id, doc) VALUES (?, ?)", (project.project_id, project.to_json())
                )
                self._db.execute("DELETE FROM api_keys WHERE project_id = ?", (project.project_id,))
                self._db.executemany(
                    "INSERT OR REPLACE INTO api_keys (key, project_id) VALUES (?, ?)",
                    [(key, project.project_id) for key in project.api_keys],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def all(self) -> list[Project]:
        with self._lock:
            rows = self._db.execute("SELECT doc FROM projects ORDER BY id").fetchall()
        return [Project.from_json(r[0]) for r in rows]


def _storable(text: str) -> bool:
    """Whether a store could hold this id or key at all (UTF-8, within DynamoDB's key size); else it is unknown."""
    try:
        return len(text.encode("utf-8")) <= MAX_DYNAMO_KEY_BYTES
    except UnicodeEncodeError:  # lone surrogates
        return False


class DynamoProjectStore:
    """Projects in a DynamoDB table (string partition key ``pk``), given as a boto3 Table."""

    def __init__(self, table: Any) -> None:
        self._table = table

    def _item(self, pk: str) -> dict[str, Any] | None:
        """The item under ``pk``: None for a key DynamoDB could never hold, 503 when it does not answer."""
        from botocore.exceptions import BotoCoreError, ClientError

        if not _storable(pk):
            return None
        try:
            item: dict[str, Any] | None = self._table.get_item(Key={"pk": pk}).get("Item")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ValidationException":
                return None
            raise ServiceUnavailableError(f"the project store (DynamoDB) refused the lookup: {exc}") from exc
        except BotoCoreError as exc:
            raise ServiceUnavailableError(f"the project store (DynamoDB) is not reachable: {exc}") from exc
        return item

    def get(self, project_id: str) -> Project | None:
        item = self._item(f"PROJECT#{project_id}")
        return None if item is None else Project.from_json(item["doc"])

    def by_key(self, api_key: str) -> Project | None:
        item = self._item(f"KEY#{api_key}")
        return None if item is None else self.get(item["project_id"])

    def put(self, project: Project) -> None:
        old = self.get(project.project_id)
        with self._table.batch_writer() as batch:
            batch.put_item(Item={"pk": f"PROJECT#{project.project_id}", "doc": project.to_json(), "kind": "project"})
            for key in project.api_keys:
                batch.put_item(Item={"pk": f"KEY#{key}", "project_id": project.project_id, "kind": "key"})
            for key in set(old.api_keys if old else ()) - set(project.api_keys):
                batch.delete_item(Key={"pk": f"KEY#{key}"})

    def all(self) -> list[Project]:
        projects: list[Project] = []
        kwargs: dict[str, Any] = {"FilterExpression": "kind = :k", "ExpressionAttributeValues": {":k": "project"}}
        while True:
            page = self._table.scan(**kwargs)
            projects.extend(Project.from_json(item["doc"]) for item in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return sorted(projects, key=lambda p: p.project_id)
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def create_dynamo_table(dynamodb: Any, name: str) -> Any:
    """Create the projects table (on-demand billing) and wait until it exists."""
    table = dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    table.wait_until_exists()
    return table


class CachedProjectStore:
    """Key lookups remembered for ``ttl_s`` (misses too, so junk keys stay cheap)."""

    def __init__(
        self, store: ProjectStore, *, ttl_s: float = DEFAULT_CACHE_TTL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._store = store
        self._ttl = ttl_s
        self._clock = clock
        self._cache: dict[str, tuple[float, Project | None]] = {}
        self._lock = threading.Lock()

    def by_key(self, api_key: str) -> Project | None:
        now = self._clock()
        with self._lock:
            hit = self._cache.get(api_key)
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        project = self._store.by_key(api_key)
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[api_key] = (now, project)
        return project

    def get(self, project_id: str) -> Project | None:
        return self._store.get(project_id)

    def put(self, project: Project) -> None:
        self._store.put(project)
        with self._lock:
            self._cache.clear()

    def all(self) -> list[Project]:
        return self._store.all()


def listed_projects(store: ProjectStore, *, stage: str) -> list[Project]:
    """Every project there is, as the dashboard and ``trackflow projects list`` show them:
    in the dev stages the built-in development project first (unless stored as a project)."""
    stored = store.all()
    builtin = [dev_project()] if stage in DEV_STAGES else []
    return [p for p in builtin if p.project_id not in {s.project_id for s in stored}] + stored


def named_project(project_id: str, *, name: str | None = None) -> Project:
    """A project with an id chosen by hand (``trackflow load``'s demo projects), new key and token."""
    return replace(
        new_project(name or project_id.replace("-", " ").capitalize()),
        project_id=project_id,
        read_token=new_read_token(project_id),
        admin_token=new_admin_token(project_id),
    )


def resolve_key(store: ProjectStore, api_key: str, *, stage: str) -> Project | None:
    """The project behind a key; the seed's development key works in dev stages only."""
    if api_key == DEV_API_KEY and stage in DEV_STAGES:
        return store.by_key(api_key) or dev_project()
    return store.by_key(api_key)


def rotate_key(project: Project, *, keep_old: bool) -> tuple[Project, str]:
    key = new_api_key()
    keys = (*project.api_keys, key) if keep_old else (key,)
    return replace(project, api_keys=keys), key
