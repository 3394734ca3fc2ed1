"""`trackflow deploy` against moto's server (S3, CloudFormation, DynamoDB) and Apache Kafka.

What moto cannot run is the stack itself: it has neither the SAM transform
nor function URLs or Kafka mappings. So the stack here is one that moto can
create with the outputs the real one has (the projects table, a function
URL), and the change-set conversation is a unit test (tests/unit/test_deploy.py);
the functions themselves run in tests/integration/test_lambda_runtime.py. Everything
the deploy does after the stack, the commands of docs/deploy.md, runs for real.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner

from chalicelib.projects import DynamoProjectStore
from chalicelib.settings import load_settings
from chalicelib.storage.clickhouse import connect
from tests.clickhouse_http import ClickHouseHttp
from tests.conftest import make_env
from trackflow.cli import main
from trackflow.deploy import DeployError, clickhouse_secret, ensure_bucket, template_for, upload
from trackflow.kafka import ApacheKafka
from trackflow.topics import partition_counts

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FUNCTION_URL = "https://abcdefghij.lambda-url.us-east-1.on.aws/"
# What moto can build of the stack: the resources and outputs bootstrap reads.
STACK = {
    "Resources": {
        "ProjectsTable": {
            "Type": "AWS::DynamoDB::Table",
            "Properties": {
                "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                "BillingMode": "PAY_PER_REQUEST",
            },
        }
    },
    "Outputs": {
        "ProjectsTableName": {"Value": {"Ref": "ProjectsTable"}},
        "FunctionUrl": {"Value": FUNCTION_URL},
    },
}


@pytest.fixture
def environment(
    apache_kafka: ApacheKafka, data_dir: Path, moto_server: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """This machine's settings for a deploy: Apache Kafka, ClickHouse over HTTP, AWS at moto."""
    env = make_env(apache_kafka, data_dir)
    env.pop("TRACKFLOW_STAGE")
    server = ClickHouseHttp(load_settings(env).clickhouse.data_path)
    env["CLICKHOUSE_URL"] = server.url
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("TRACKFLOW_DATA_DIR")
    env["STACK"] = f"trackflow-{uuid.uuid4().hex[:8]}"  # moto's state outlives its server in this process
    boto3.client("cloudformation").create_stack(StackName=env["STACK"], TemplateBody=json.dumps(STACK))
    yield env
    server.close()


def test_bootstrap_creates_topics_tables_and_the_first_project_then_prints_the_snippet(
    environment: dict[str, str], data_dir: Path
) -> None:
    command = [
        "deploy",
        "--bootstrap-only",
        "--stack-name",
        environment["STACK"],
        "--project",
        "Shop",
        "--origin",
        "https://shop.example",
        "--script-src",
        "https://cdn.shop.example/tracker.js",
        "--partitions",
        "3",
    ]
    result = CliRunner().invoke(main, command, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    events, dlq = environment["TRACKFLOW_EVENTS_TOPIC"], environment["TRACKFLOW_DLQ_TOPIC"]
    bootstrap = environment["KAFKA_BOOTSTRAP_SERVERS"]
    assert partition_counts(bootstrap, [events, dlq, "trackflow.events.failed"]) == {
        events: 3,
        dlq: 1,
        "trackflow.events.failed": 1,
    }
    tables = {
        row[0]
        for row in connect(
            load_settings({**environment, "TRACKFLOW_DATA_DIR": str(data_dir), "CLICKHOUSE_URL": ""}).clickhouse
        )
        .query(f"SHOW TABLES FROM {environment['CLICKHOUSE_DATABASE']}")
        .result_rows
    }
    assert {"events", "dead_letters", "pageviews", "sessions"} <= tables
    table = boto3.client("cloudformation").describe_stacks(StackName=environment["STACK"])["Stacks"][0]["Outputs"]
    name = next(o["OutputValue"] for o in table if o["OutputKey"] == "ProjectsTableName")
    [project] = DynamoProjectStore(boto3.resource("dynamodb").Table(name)).all()
    assert (project.name, project.allowed_origins) == ("Shop", ("https://shop.example",))
    assert f"API key:    {project.api_keys[0]}" in result.output
    assert (
        '<script async src="https://cdn.shop.example/tracker.js" '
        'data-endpoint="https://abcdefghij.lambda-url.us-east-1.on.aws"></script>'
    ) in result.output
    assert f"track('config', '{project.api_keys[0]}');" in result.output

    again = CliRunner().invoke(main, command, catch_exceptions=False)
    assert again.exit_code == 0, again.output
    assert "project 'Shop' exists" in again.output and f"topic {events}: exists" in again.output
    assert len(DynamoProjectStore(boto3.resource("dynamodb").Table(name)).all()) == 1


def test_the_bundle_is_uploaded_once_by_content_and_the_template_points_at_it(
    moto_server: str, lambda_bundle: Any
) -> None:
    s3 = boto3.client("s3")
    bucket = f"trackflow-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    said: list[str] = []
    data = lambda_bundle.zip_path.read_bytes()
    key = upload(s3, bucket, "trackflow", data, ".zip", said.append)
    assert upload(s3, bucket, "trackflow", data, ".zip", said.append) == key
    assert "uploaded" in said[0] and "there already" in said[1]
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data
    template = json.loads(template_for(lambda_bundle.directory / "sam.json", bucket, key))
    uris = {
        r["Properties"]["CodeUri"] for r in template["Resources"].values() if r["Type"] == "AWS::Serverless::Function"
    }
    assert uris == {f"s3://{bucket}/{key}"}


def test_without_a_stack_bootstrap_says_to_deploy_first(environment: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["deploy", "--bootstrap-only", "--stack-name", "nothing-here"])
    assert result.exit_code == 1
    assert "there is no stack nothing-here" in result.output


def test_the_upload_bucket_is_created_private_in_the_stacks_region_or_refused_elsewhere(moto_server: str) -> None:
    said: list[str] = []
    bucket = f"trackflow-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", region_name="eu-west-1")
    ensure_bucket(s3, bucket, "eu-west-1", said.append)
    assert s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] == "eu-west-1"
    assert s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]["BlockPublicPolicy"]
    ensure_bucket(s3, bucket, "eu-west-1", said.append)  # there already: checked, not created again
    assert "created" in said[0] and "is in eu-west-1" in said[1]
    with pytest.raises(DeployError, match="Lambda takes code only from its own region"):
        ensure_bucket(boto3.client("s3", region_name="us-east-1"), bucket, "us-east-1", said.append)


def test_the_clickhouse_password_is_kept_in_a_secret_created_once_then_updated(moto_server: str) -> None:
    client = boto3.client("secretsmanager")
    stack = f"trackflow-{uuid.uuid4().hex[:8]}"
    first = clickhouse_secret(client, stack, "one", kms_key=None, progress=lambda _: None)
    second = clickhouse_secret(client, stack, "two", kms_key=None, progress=lambda _: None)
    assert first == second and f"{stack}/clickhouse-password" in first
    assert client.get_secret_value(SecretId=first)["SecretString"] == "two"


def test_deploy_refuses_the_dev_stage_unless_told_twice_and_needs_a_region(
    moto_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = CliRunner().invoke(main, ["deploy", "--stage", "dev", "--bucket", "b"])
    assert refused.exit_code == 2 and "--allow-dev-stage" in refused.output
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")  # boto3 does not read it
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    nowhere = CliRunner().invoke(main, ["deploy", "--bootstrap-only"])
    assert nowhere.exit_code == 1 and "export AWS_DEFAULT_REGION" in nowhere.output
