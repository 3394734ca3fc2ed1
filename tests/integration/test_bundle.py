"""The Lambda bundle, unzipped and run the way Lambda runs it.

``deployment.zip`` goes into an empty folder, and a clean CPython 3.12 (the
runtime the template names) that sees only that folder, the standard library
and boto3 (as Lambda's runtime has) loads ``app`` and calls its handlers:
collect through an API Gateway REST event and through a function URL
(payload 2.0) event, to a real broker; then ``ingest`` with the mapping
payload built from the records on that broker, to ClickHouse over HTTP
(``CLICKHOUSE_URL``, the test session's chDB behind ClickHouse's HTTP
interface); then config and stats through both front doors. Projects live in
DynamoDB (moto's server), as in the prod stage.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import boto3
import pytest

from chalicelib.projects import DynamoProjectStore, create_dynamo_table, new_project
from chalicelib.settings import Settings
from tests.clickhouse_http import ClickHouseHttp
from tests.conftest import new_event, read_records
from trackflow.package import Bundle
from trackflow.runner import mapping_payload

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SITE = "https://shop.example"
# What Lambda's python runtime puts beside the bundle: the AWS SDK and what it imports.
LAMBDA_RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six.py")
DRIVER = """
import json, sys, time, uuid
sys.path[:] = [sys.argv[1]] + [p for p in sys.path if p.startswith(sys.base_prefix)] + [sys.argv[2]]

class Context:
    function_name = "trackflow"
    aws_request_id = str(uuid.uuid4())
    def get_remaining_time_in_millis(self):
        return 60000

answers, sys.stdout = sys.stdout, sys.stderr  # the function's own output goes to its log, as in Lambda
import app
for line in sys.stdin:
    call = json.loads(line)
    if call["handler"] == "modules":  # where each module loads from, or None when it cannot
        result = {}
        for name in call["event"]:
            try:
                result[name] = __import__(name).__file__
            except ImportError:
                result[name] = None
    else:
        try:
            result = getattr(app, call["handler"])(call["event"], Context())
        except Exception as exc:
            result = {"raised": repr(exc)}
    print(json.dumps(result), file=answers, flush=True)
"""


def _lambda_python() -> str | None:
    """A CPython 3.12 to run the bundle in: TRACKFLOW_LAMBDA_PYTHON, python3.12 on PATH, or pyenv's."""
    candidates = [os.environ.get("TRACKFLOW_LAMBDA_PYTHON"), shutil.which("python3.12")]
    candidates += sorted(str(p) for p in Path.home().glob(".pyenv/versions/3.12.*/bin/python3.12"))
    for candidate in filter(None, candidates):
        probe = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 12))"], capture_output=True, text=True
        )  # a pyenv shim answers for a version it does not select with an error
        if probe.stdout.strip() == "True":
            return candidate
    return None


class Function:
    """One warm Lambda instance of the unzipped bundle: handler calls in, JSON answers out."""

    def __init__(self, python: str, task: Path, runtime: Path, env: dict[str, str]) -> None:
        driver = task.parent / "driver.py"
        driver.write_text(DRIVER)
        self.log = task.parent / f"log-{uuid.uuid4().hex[:8]}.txt"
        self._log = self.log.open("w")
        self._process = subprocess.Popen(
            [python, "-S", "-E", "-s", str(driver), str(task), str(runtime)],
            cwd=task,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )

    def __call__(self, handler: str, event: Any) -> Any:
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write(json.dumps({"handler": handler, "event": event}) + "\n")
        self._process.stdin.flush()
        line = self._process.stdout.readline()
        if not line:
            raise AssertionError(f"the function died: {self.log.read_text()[-3000:]}")
        return json.loads(line)

    def metrics(self) -> list[dict[str, Any]]:
        """The Embedded Metric Format lines the function printed to its log so far."""
        lines = self.log.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith('{"_aws"')]

    def close(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
        self._log.close()


def rest_event(method: str, path: str, resource: str, **extra: Any) -> dict[str, Any]:
    """An API Gateway REST proxy event, as API Gateway builds it (query values decoded)."""
    headers = extra.pop("headers", {})
    query = extra.pop("query", None)
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": extra.pop("path_parameters", None),
        "stageVariables": None,
        "requestContext": {
            "resourcePath": resource,
            "httpMethod": method,
            "path": f"/api{path}",
            "stage": "api",
            "identity": {"sourceIp": "203.0.113.9", "userAgent": headers.get("User-Agent")},
        },
        "body": extra.pop("body", None),
        "isBase64Encoded": False,
    }


def url_event(method: str, path: str, *, raw_query: str = "", **extra: Any) -> dict[str, Any]:
    """A function URL event (payload 2.0): lower-case headers, the query string as sent."""
    headers = {k.lower(): v for k, v in extra.pop("headers", {}).items()}
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": {
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.9"},
            "requestId": str(uuid.uuid4()),
            "stage": "$default",
        },
        "body": extra.pop("body", None),
        "isBase64Encoded": False,
    }


@pytest.fixture(scope="module")
def unzipped(lambda_bundle: Bundle, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, Path]:
    python = _lambda_python()
    if python is None:
        message = (
            "no CPython 3.12 to run the python3.12 bundle in: set TRACKFLOW_LAMBDA_PYTHON, or `pyenv install 3.12`"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    root = tmp_path_factory.mktemp("lambda")
    task = root / "task"
    task.mkdir()
    with zipfile.ZipFile(lambda_bundle.zip_path) as bundle:
        bundle.extractall(task)
    runtime = root / "runtime"
    runtime.mkdir()
    site = Path(boto3.__file__).resolve().parents[1]
    for name in LAMBDA_RUNTIME_PACKAGES:
        (runtime / name).symlink_to(site / name)
    return python, task, runtime


@pytest.fixture
def deployed(
    unzipped: tuple[str, Path, Path], settings: Settings, clickhouse: Any, moto_server: str
) -> Iterator[tuple[Function, Any]]:
    """The bundle as deployed in the prod stage: DynamoDB projects, Kafka, ClickHouse over HTTP."""
    python, task, runtime = unzipped
    table = f"projects-{uuid.uuid4().hex[:8]}"
    store = DynamoProjectStore(create_dynamo_table(boto3.resource("dynamodb"), table))
    project = new_project("Shop", allowed_origins=[SITE])
    store.put(project)
    server = ClickHouseHttp(settings.clickhouse.data_path)
    env = {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "TZ": "UTC",
        "AWS_LAMBDA_FUNCTION_NAME": "trackflow-prod",
        "AWS_ENDPOINT_URL": moto_server,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "TRACKFLOW_STAGE": "prod",
        "TRACKFLOW_SALT_SECRET": "bundle-test-salt-0123456789",
        "TRACKFLOW_PROJECTS_TABLE": table,
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "TRACKFLOW_EVENTS_TOPIC": settings.events_topic,
        "TRACKFLOW_DLQ_TOPIC": settings.dlq_topic,
        "CLICKHOUSE_URL": server.url,
        "CLICKHOUSE_DATABASE": settings.clickhouse.database,
    }
    function = Function(python, task, runtime, env)
    yield function, project
    function.close()
    server.close()


def test_the_bundle_holds_native_code_for_python312_and_nothing_local(unzipped: tuple[str, Path, Path]) -> None:
    _, task, _ = unzipped
    native = [p.name for p in task.rglob("*.so")]
    assert any("cpython-312-x86_64-linux-gnu" in name for name in native)
    assert not [name for name in native if "cpython-311" in name]
    assert not {"trackflow", "tests", "chdb", "moto", "boto3", "botocore"} & {p.name for p in task.iterdir()}


def test_the_unzipped_bundle_collects_ingests_and_answers_through_both_front_doors(
    deployed: tuple[Function, Any], settings: Settings, clickhouse: Any
) -> None:
    function, project = deployed
    loaded = function("modules", ["confluent_kafka", "orjson", "clickhouse_connect", "boto3", "trackflow"])
    assert loaded["trackflow"] is None  # local tooling never ships
    assert "/task/" in loaded["confluent_kafka"] and "/runtime/" in loaded["boto3"]

    # collect: the REST API's event, then the function URL's, same project
    headers = {
        "Content-Type": "text/plain",
        "Origin": SITE,
        "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0",
    }
    first = new_event(context={"url": f"{SITE}/café", "anonymous_id": "a1"})
    second = new_event(context={"url": f"{SITE}/checkout", "anonymous_id": "a2"})
    rest = function(
        "app",
        rest_event(
            "POST",
            "/v1/collect",
            "/v1/collect",
            headers=headers,
            body=json.dumps({"api_key": project.api_keys[0], "events": [first]}),
        ),
    )
    assert rest["statusCode"] == 202, rest
    assert rest["headers"]["Access-Control-Allow-Origin"] == SITE
    url = function(
        "function_url",
        url_event(
            "POST",
            "/v1/collect",
            headers=headers,
            body=json.dumps({"api_key": project.api_keys[0], "events": [second]}),
        ),
    )
    assert url["statusCode"] == 202, url
    assert json.loads(url["body"])["accepted"] == 1
    refused = function("function_url", url_event("POST", "/v1/collect", headers=headers, body="{not json"))
    assert refused["statusCode"] == 400 and json.loads(refused["body"])["error"]["code"]
    missing = function("function_url", url_event("GET", "/v2/nothing"))
    assert missing["statusCode"] == 404 and json.loads(missing["body"])["error"]["code"] == "not_found"

    # ingest: the mapping's payload from the records on the broker, then the same records again in other batches
    records = read_records(settings.bootstrap_servers, settings.events_topic, 2, partitions=(0, 1))
    assert len(records) == 2
    payload = mapping_payload(records, bootstrap_servers=settings.bootstrap_servers)
    result = function("ingest", payload)
    assert result == {"records": 2, "inserted": 2, "duplicates": 0, "dead_lettered": 0}, result
    for record in records:  # a redelivery with other boundaries, as after a timeout
        function("ingest", mapping_payload([record], bootstrap_servers=settings.bootstrap_servers))
    stored = clickhouse.query("SELECT url_path FROM events FINAL ORDER BY url_path").result_rows
    assert stored == [("/café",), ("/checkout",)]

    # config through both doors
    config = function(
        "app",
        rest_event(
            "GET",
            f"/v1/config/{project.api_keys[0]}",
            "/v1/config/{api_key}",
            path_parameters={"api_key": project.api_keys[0]},
        ),
    )
    assert config["statusCode"] == 200 and json.loads(config["body"])["enabled"] is True
    via_url = function("function_url", url_event("GET", f"/v1/config/{project.api_keys[0]}"))
    assert via_url["statusCode"] == 200 and json.loads(via_url["body"]) == json.loads(config["body"])

    # stats: a Unicode filter, decoded by API Gateway in one, raw in the function URL's query string
    auth = {"Authorization": f"Bearer {project.read_token}"}
    query = {"project": project.project_id, "period": "today", "page": "/café"}
    by_rest = function("app", rest_event("GET", "/v1/stats/overview", "/v1/stats/overview", headers=auth, query=query))
    raw = "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items())
    by_url = function("function_url", url_event("GET", "/v1/stats/overview", raw_query=raw, headers=auth))
    assert by_rest["statusCode"] == 200, by_rest
    assert by_url["statusCode"] == 200, by_url
    assert json.loads(by_url["body"]) == json.loads(by_rest["body"])
    assert json.loads(by_rest["body"])["metrics"]["pageviews"]["value"] == 1

    # CloudWatch metrics: EMF lines in the log, with the names /metrics uses
    emitted: dict[str, float] = {}
    for document in function.metrics():
        declared = document["_aws"]["CloudWatchMetrics"][0]
        assert declared["Namespace"] == "TrackFlow" and "function" in declared["Dimensions"][0]
        for metric in declared["Metrics"]:
            emitted[metric["Name"]] = emitted.get(metric["Name"], 0) + document[metric["Name"]]
    assert emitted["trackflow_events_accepted_total"] == 2
    # the redelivered records are written again, and FINAL reads each event once (above)
    assert emitted["trackflow_rows_written_total"] == 4
    assert emitted["trackflow_duplicates_dropped_total"] == 0
    assert emitted["trackflow_http_requests_total"] >= 7
    assert emitted["trackflow_produce_seconds"] > 0
