"""Every function of the packaged template, run the way Lambda runs it and invoked by the event its trigger sends.

``deployment.zip`` goes into an empty folder; each function of ``sam.json``
starts under the Lambda Runtime Interface Emulator and ``awslambdaric`` in a
clean CPython 3.12 (``trackflow.lambda_runtime``), by its ``Handler`` string,
with the environment the template gives it. The backing services are real:
the session's broker, DynamoDB and Secrets Manager in moto's server (the salt
and the ClickHouse password are secrets, as the stack makes them), and
ClickHouse over HTTP (the session's chDB behind ClickHouse's HTTP interface,
checking the password).

The triggers' events: an API Gateway REST event and a function URL (payload
2.0) event for collect, config and stats; the Kafka mapping's batch built from
the records on the broker for ingest (then the same records in other batches);
an EventBridge scheduled event for compact. A function added to the template
fails the flow test until the flow invokes it.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import boto3
import pytest

from bench.cost import LOG_BYTES
from chalicelib.collect.events import MAX_BODY_BYTES, MAX_EVENTS_PER_BATCH
from chalicelib.kafka.records import LAMBDA_PAYLOAD_LIMIT
from chalicelib.projects import DynamoProjectStore, create_dynamo_table, new_project
from chalicelib.settings import Settings
from tests.clickhouse_http import ClickHouseHttp
from tests.conftest import new_event, read_records
from trackflow.lambda_runtime import LambdaFunction, missing_tools, runtime_folder, template_environment
from trackflow.package import Bundle
from trackflow.runner import mapping_payload, mapping_payloads

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SITE = "https://shop.example"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0"
CLICKHOUSE_PASSWORD = "ch-password-from-secrets-manager"


@pytest.fixture(scope="module")
def unzipped(lambda_bundle: Bundle, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Any]]:
    missing = missing_tools()
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    root = tmp_path_factory.mktemp("lambda")
    task = root / "task"
    with zipfile.ZipFile(lambda_bundle.zip_path) as bundle:
        bundle.extractall(task)
    template = json.loads((lambda_bundle.directory / "sam.json").read_text())
    return task, runtime_folder(root / "runtime"), template


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
            "requestId": str(uuid.uuid4()),
            "identity": {"sourceIp": "203.0.113.9", "userAgent": headers.get("User-Agent")},
        },
        "body": extra.pop("body", None),
        "isBase64Encoded": False,
    }


def url_event(method: str, path: str, *, raw_query: str = "", body: str | None = None, **extra: Any) -> dict[str, Any]:
    """A function URL event (payload 2.0): lower-case headers, the query as sent, a base64 body, cookies."""
    headers = {k.lower(): v for k, v in extra.pop("headers", {}).items()}
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": {
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.9"},
            "requestId": str(uuid.uuid4()),
            "stage": "$default",
            "timeEpoch": 1764720000000,
        },
        "isBase64Encoded": body is not None,
        "body": base64.b64encode(body.encode()).decode() if body is not None else None,
    }
    if extra.get("cookies"):
        event["cookies"] = extra["cookies"]
    return event


def scheduled_event() -> dict[str, Any]:
    """What EventBridge sends a function on a schedule."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2026-12-03T08:00:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/trackflow-CompactEvent"],
        "detail": {},
    }


class Stack:
    """Every function of the template, each a running instance, with the services the template points at."""

    def __init__(self, functions: dict[str, LambdaFunction], template: dict[str, Any], project: Any) -> None:
        self.functions = functions
        self.template = template
        self.project = project
        self.invoked: set[str] = set()

    def __call__(self, handler: str, event: Any) -> Any:
        self.invoked.add(handler)
        return self.functions[handler].invoke(event)

    def handlers(self) -> set[str]:
        return set(self.functions)


def _functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: resource["Properties"]
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }


@pytest.fixture
def stack(
    unzipped: tuple[Path, Path, dict[str, Any]], settings: Settings, clickhouse: Any, moto_server: str, tmp_path: Path
) -> Iterator[Stack]:
    """The prod stage as the template deploys it: DynamoDB projects, secrets, Kafka, ClickHouse over HTTP."""
    task, runtime, template = unzipped
    table = f"projects-{uuid.uuid4().hex[:8]}"
    store = DynamoProjectStore(create_dynamo_table(boto3.resource("dynamodb"), table))
    project = new_project("Shop", allowed_origins=[SITE])
    store.put(project)
    secrets = boto3.client("secretsmanager")
    salt = secrets.create_secret(Name=f"salt-{table}", SecretString="generated-by-the-stack-0123456789")["ARN"]
    password = secrets.create_secret(Name=f"ch-{table}", SecretString=CLICKHOUSE_PASSWORD)["ARN"]
    server = ClickHouseHttp(settings.clickhouse.data_path, password=CLICKHOUSE_PASSWORD)
    values = {
        "KafkaBootstrapServers": settings.bootstrap_servers,
        "EventsTopic": settings.events_topic,
        "DeadLetterTopic": settings.dlq_topic,
        "ClickHouseUrl": server.url,
        "ClickHouseDatabase": settings.clickhouse.database,
        "ClickHousePasswordSecretArn": password,
        "ProjectsTable": table,
        "HashSaltSecret": salt,
    }
    functions = {}
    for name, properties in _functions(template).items():
        env = template_environment(template, name, values) | {
            "AWS_LAMBDA_FUNCTION_NAME": f"trackflow-prod-{name}",
            "AWS_ENDPOINT_URL": moto_server,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "TRACKFLOW_ROLLUP_SETTLE": "0",  # compact what was just written (the stack's default waits 60 s)
        }
        functions[properties["Handler"]] = LambdaFunction(
            properties["Handler"],
            task=task,
            runtime=runtime,
            env=env,
            log=tmp_path / f"{name}.log",
            timeout_s=int(properties.get("Timeout", 60)),
            memory_mb=int(properties.get("MemorySize", 512)),
        )
    yield Stack(functions, template, project)
    for function in functions.values():
        function.close()
    server.close()


def test_the_bundle_loads_from_itself_and_the_runtime_only(unzipped: tuple[Path, Path, dict[str, Any]]) -> None:
    task, _, _ = unzipped
    native = [p.name for p in task.rglob("*.so")]
    assert any("cpython-312-x86_64-linux-gnu" in name for name in native)
    assert not [name for name in native if "cpython-311" in name]
    assert not {"trackflow", "tests", "chdb", "moto", "boto3", "botocore", "awslambdaric"} & {
        p.name for p in task.iterdir()
    }


def _emf_lines(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines if line.startswith('{"_aws"')]


def test_every_function_in_the_template_answers_its_trigger_under_the_lambda_runtime(
    stack: Stack, settings: Settings, clickhouse: Any
) -> None:
    project = stack.project
    key = project.api_keys[0]
    headers = {"Content-Type": "text/plain", "Origin": SITE, "User-Agent": BROWSER}

    # collect: the REST API's event, then the function URL's (base64 body, cookies), same project
    first = new_event(context={"url": f"{SITE}/café", "anonymous_id": "a1"})
    second = new_event(context={"url": f"{SITE}/checkout", "anonymous_id": "a2"})
    body = json.dumps({"api_key": key, "events": [first]})
    rest = stack("app.app", rest_event("POST", "/v1/collect", "/v1/collect", headers=headers, body=body))
    assert rest["statusCode"] == 202, rest
    assert rest["headers"]["Access-Control-Allow-Origin"] == SITE
    collect_log = stack.functions["app.app"].log_of(stack.functions["app.app"].last_request_id)
    url = stack(
        "app.function_url",
        url_event(
            "POST",
            "/v1/collect",
            headers=headers,
            body=json.dumps({"api_key": key, "events": [second]}),
            cookies=["_ga=GA1.1.1.1", "consent=yes"],
        ),
    )
    assert url["statusCode"] == 202, url
    assert json.loads(url["body"])["accepted"] == 1
    refused = stack("app.function_url", url_event("POST", "/v1/collect", headers=headers, body="{not json"))
    assert refused["statusCode"] == 400 and json.loads(refused["body"])["error"]["code"]
    missing = stack("app.function_url", url_event("GET", "/v2/nothing"))
    assert missing["statusCode"] == 404 and json.loads(missing["body"])["error"]["code"] == "not_found"
    hidden = stack("app.function_url", url_event("GET", "/metrics"))
    assert hidden["statusCode"] == 404, hidden

    # ingest: the mapping's payload from the records on the broker, then the same records in other batches
    records = read_records(settings.bootstrap_servers, settings.events_topic, 2, partitions=(0, 1))
    assert len(records) == 2
    result = stack("app.ingest", mapping_payload(records, bootstrap_servers=settings.bootstrap_servers))
    assert result == {"records": 2, "inserted": 2, "duplicates": 0, "dead_lettered": 0, "erased": 0}, result
    ingest_log = stack.functions["app.ingest"].log_of(stack.functions["app.ingest"].last_request_id)
    for record in records:  # a redelivery with other boundaries, as after a timeout
        stack("app.ingest", mapping_payload([record], bootstrap_servers=settings.bootstrap_servers))
    stored = clickhouse.query("SELECT url_path FROM events FINAL ORDER BY url_path").result_rows
    assert stored == [("/café",), ("/checkout",)]

    # config through both doors
    config = stack(
        "app.app",
        rest_event("GET", f"/v1/config/{key}", "/v1/config/{api_key}", path_parameters={"api_key": key}),
    )
    assert config["statusCode"] == 200 and json.loads(config["body"])["enabled"] is True
    via_url = stack("app.function_url", url_event("GET", f"/v1/config/{key}"))
    assert via_url["statusCode"] == 200 and json.loads(via_url["body"]) == json.loads(config["body"])

    # stats: a Unicode filter, decoded by API Gateway in one, raw in the function URL's query string
    auth = {"Authorization": f"Bearer {project.read_token}"}
    query = {"project": project.project_id, "period": "24h", "page": "/café"}

    def both_doors(path: str, asked: dict[str, str]) -> tuple[Any, Any]:
        """The bodies of GET ``path`` through the REST API (``asked`` decoded) and the function URL (raw)."""
        by_rest = stack("app.app", rest_event("GET", path, path, headers=auth, query=asked))
        raw = "&".join(f"{k}={quote(v, safe='')}" for k, v in asked.items())
        by_url = stack("app.function_url", url_event("GET", path, raw_query=raw, headers=auth))
        assert by_rest["statusCode"] == 200, by_rest
        assert by_url["statusCode"] == 200, by_url
        return json.loads(by_rest["body"]), json.loads(by_url["body"])

    def overview() -> tuple[Any, Any]:
        return both_doors("/v1/stats/overview", query)

    before_rest, before_url = overview()
    assert before_url == before_rest
    assert before_rest["metrics"]["pageviews"]["value"] == 1

    # the dashboard's session breakdowns in one request: the comma list decoded by API Gateway, raw (%2C)
    # in the function URL's query string
    asked = {"project": project.project_id, "period": "24h", "dimensions": "entry_pages,browsers"}

    def breakdowns() -> list[Any]:
        by_rest, by_url = both_doors("/v1/stats/breakdowns", asked)
        assert by_url == by_rest
        return [(b["dimension"], b["rows"]) for b in by_rest["breakdowns"]]

    tables = breakdowns()
    assert [(d, [r["value"] for r in rows]) for d, rows in tables] == [
        ("entry_pages", ["/café", "/checkout"]),
        ("browsers", ["Firefox"]),
    ], tables

    # compact: EventBridge's scheduled event; the reports read the rollups afterwards and say the same
    compacted = stack("app.compact", scheduled_event())
    assert compacted["hours"] >= 1 and compacted["days"] >= 1, compacted
    assert compacted["day_prefixes"] == 0, compacted  # settle 0 leaves no hour dirty: no day still going
    assert (compacted["backlog_hours"], compacted["backlog_rows"], compacted["pending_age_s"]) == (0, 0, 0), compacted
    assert compacted["expired_rows"] == 0, compacted  # retention ran (projects from DynamoDB): nothing is that old
    compact_log = stack.functions["app.compact"].log_of(stack.functions["app.compact"].last_request_id)
    after_rest, _ = overview()
    assert after_rest["metrics"] == before_rest["metrics"]
    assert breakdowns() == tables

    health = stack("app.app", rest_event("GET", "/health", "/health"))
    assert health["statusCode"] == 200 and json.loads(health["body"])["clickhouse"]["ok"], health

    assert stack.invoked == stack.handlers(), (
        f"functions in the template never invoked: {stack.handlers() - stack.invoked}"
    )

    # CloudWatch: one EMF line per invocation, with the names /metrics uses; the log bytes a collect costs
    emf = _emf_lines(collect_log)
    assert len(emf) == 1, collect_log
    line = emf[0]
    assert line["function"] == "trackflow-prod-APIHandler" and line["trackflow_events_accepted_total"] == 1
    assert line["route"] == "/v1/collect" and line["trackflow_http_requests_total"] == 1
    assert line["trackflow_produce_seconds"] > 0
    # What CloudWatch Logs bills per invocation; bench/cost.py prices the log with LOG_BYTES.
    for kind, lines in (("collect", collect_log), ("ingest", ingest_log), ("compact", compact_log)):
        logged = sum(len(text.encode()) + 1 for text in lines)
        print(f"\n{kind} invocation log: {len(lines)} lines, {logged} bytes")
        assert len(_emf_lines(lines)) == 1, lines
        assert logged <= LOG_BYTES[kind], lines
    ingest_lines = _emf_lines(stack.functions["app.ingest"].log.read_text().splitlines())
    assert len(ingest_lines) == 3  # three invocations, one line each
    assert sum(line["trackflow_rows_written_total"] for line in ingest_lines) == 4  # redelivered rows are written
    compact_lines = _emf_lines(stack.functions["app.compact"].log.read_text().splitlines())
    assert compact_lines[-1]["trackflow_compaction_pending_age_seconds"] == 0
    assert compact_lines[-1]["trackflow_compaction_backlog_rows"] == 0
    assert compact_lines[-1]["trackflow_compaction_rewrite_hours"] == 0
    assert compact_lines[-1]["trackflow_compaction_seconds"] > 0
    assert compact_lines[-1]["function"] == "trackflow-prod-Compact"


def _biggest_event(n: int) -> dict[str, Any]:
    """An event at the validator's limits: long context strings, props near their byte budget, all its own."""
    long = f"{n:06d}" + "x" * 1994
    return new_event(
        context={
            "url": f"{SITE}/{'p' * 1900}?q={n}",
            "referrer": f"https://ref.example/{long[:1900]}",
            "title": long,
            "anonymous_id": "a" * 128,
            "session_id": "s" * 128,
        },
        props={f"k{i}": f"{n:06d}" + "v" * 994 for i in range(15)},  # its own: nothing shared between events
    )


def test_the_biggest_batches_collect_accepts_stay_under_the_invoke_limit_and_are_stored(
    stack: Stack, settings: Settings, clickhouse: Any
) -> None:
    key = stack.project.api_keys[0]
    headers = {"Content-Type": "text/plain", "Origin": SITE, "User-Agent": BROWSER}
    requests = 0
    for round_ in range(4):
        events: list[dict[str, Any]] = []
        while len(events) < MAX_EVENTS_PER_BATCH:
            candidate = [*events, _biggest_event(round_ * 1000 + len(events))]
            if len(json.dumps({"api_key": key, "events": candidate})) > MAX_BODY_BYTES:
                break
            events = candidate
        answer = stack(
            "app.app",
            rest_event(
                "POST",
                "/v1/collect",
                "/v1/collect",
                headers=headers,
                body=json.dumps({"api_key": key, "events": events}),
            ),
        )
        assert answer["statusCode"] == 202 and json.loads(answer["body"])["accepted"] == len(events), answer
        requests += len(events)
    records = read_records(settings.bootstrap_servers, settings.events_topic, 4, partitions=(0, 1))
    biggest = max(len(r.value) for r in records)
    # The mapping would send these (BatchSize 2000 allows them all) in payloads under Lambda's limit.
    payloads = mapping_payloads(records * 20, bootstrap_servers=settings.bootstrap_servers)
    sizes = [len(json.dumps(p).encode()) for p in payloads]
    print(f"\nbiggest record {biggest} bytes; 80 records -> payloads of {sizes} bytes")
    assert len(payloads) > 1 and max(sizes) <= LAMBDA_PAYLOAD_LIMIT
    for payload in payloads:
        result = stack("app.ingest", payload)
        assert "errorMessage" not in result and result["dead_lettered"] == 0, result
    assert clickhouse.query("SELECT count() FROM events FINAL").result_rows[0][0] == requests
