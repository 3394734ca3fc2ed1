"""``trackflow deploy``: from a clone to a tracker snippet that sends to AWS.

The steps, each printed as it runs:

1. package the functions (``trackflow.package``) for the chosen architecture;
2. upload ``deployment.zip`` and the template to an S3 bucket, named by their
   content, so an unchanged bundle is not uploaded again;
3. deploy the CloudFormation stack through a change set (the template is a
   SAM template: CloudFormation expands it, hence ``CAPABILITY_AUTO_EXPAND``),
   with every parameter; on an update, parameters not given keep their value;
4. create the Kafka topics (events, dead letters, the mapping's failure topic);
5. run the ClickHouse migrations against ``CLICKHOUSE_URL``;
6. create the first project in the stack's DynamoDB table (or find it);
7. print the tracker snippet pointing at the function URL.

Steps 4 to 7 (``bootstrap``) run from this machine, so Kafka and ClickHouse
must be reachable from it; with both inside a VPC, run ``trackflow deploy
--bootstrap-only`` from a host in it. AWS clients come from the caller, so
``AWS_ENDPOINT_URL`` points them at an emulator.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chalicelib.projects import DynamoProjectStore, Project, new_project
from chalicelib.settings import Settings

CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"]
NO_CHANGES = ("didn't contain changes", "No updates are to be performed")
Progress = Callable[[str], None]


class DeployError(Exception):
    """A step failed; the message says which and what to do."""


@dataclass(frozen=True)
class Deployed:
    """What a person needs after a deploy."""

    outputs: dict[str, str]
    project: Project
    snippet: str


def stack_parameters(settings: Settings, overrides: Mapping[str, str], *, creating: bool) -> dict[str, str]:
    """The stack's parameters: from the settings this machine uses, then ``overrides`` (``--param``)."""
    security = settings.kafka_security
    params: dict[str, str] = {"EventsTopic": settings.events_topic, "DeadLetterTopic": settings.dlq_topic}
    if settings.kafka_bootstrap_servers:
        params["KafkaBootstrapServers"] = settings.kafka_bootstrap_servers
    clickhouse = settings.clickhouse
    if not clickhouse.embedded:
        params["ClickHouseUrl"] = (
            clickhouse.url or f"{'https' if clickhouse.secure else 'http'}://{clickhouse.host}:{clickhouse.port}"
        )
        params.update(ClickHouseUser=clickhouse.user, ClickHousePassword=clickhouse.password)
        params["ClickHouseDatabase"] = clickhouse.database
        if clickhouse.cluster:
            params["ClickHouseCluster"] = clickhouse.cluster
    params["KafkaSecurityProtocol"] = security.protocol
    if security.mechanism:
        params["KafkaSaslMechanism"] = security.mechanism
    if security.secret_arn:
        params["KafkaSaslSecretArn"] = security.secret_arn
    if creating:
        params["SaltSecret"] = secrets.token_urlsafe(32)  # kept by the stack; an update reuses it
    params.update(overrides)
    for required in ("KafkaBootstrapServers", "ClickHouseUrl"):
        if creating and not params.get(required):
            env = "KAFKA_BOOTSTRAP_SERVERS" if required == "KafkaBootstrapServers" else "CLICKHOUSE_URL"
            raise DeployError(f"{required} is not set: export {env}, or pass --param {required}=...")
    return params


def upload(s3: Any, bucket: str, prefix: str, data: bytes, suffix: str, progress: Progress) -> str:
    """Put ``data`` at ``prefix/<sha256>.suffix`` unless it is there already; return the key."""
    key = f"{prefix}/{hashlib.sha256(data).hexdigest()[:20]}{suffix}"
    try:
        s3.head_object(Bucket=bucket, Key=key)
        progress(f"s3://{bucket}/{key} is there already")
    except s3.exceptions.ClientError:
        s3.put_object(Bucket=bucket, Key=key, Body=data)
        progress(f"uploaded s3://{bucket}/{key} ({len(data) / 1e6:.1f} MB)")
    return key


DEFAULT_FAILURE_DESTINATION = "kafka://trackflow.events.failed"


def failure_topic(parameters: Mapping[str, str]) -> str | None:
    """The Kafka topic the mapping hands failed records to, when its destination is one."""
    destination = parameters.get("OnFailureDestination", DEFAULT_FAILURE_DESTINATION)
    return destination.removeprefix("kafka://") if destination.startswith("kafka://") else None


def template_for(sam_template: Path, bucket: str, code_key: str) -> str:
    """The packaged template with every function's code in S3."""
    template = json.loads(sam_template.read_text())
    for resource in template["Resources"].values():
        if resource.get("Type") == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = f"s3://{bucket}/{code_key}"
    return json.dumps(template, separators=(",", ":"))


def _stack(cloudformation: Any, name: str) -> dict[str, Any] | None:
    try:
        stacks = cloudformation.describe_stacks(StackName=name)["Stacks"]
    except cloudformation.exceptions.ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise
    return stacks[0] if stacks else None


def _is_new(stack: Mapping[str, Any] | None) -> bool:
    """No stack yet, or only a change set under review: it is created, not updated."""
    return stack is None or stack["StackStatus"] == "REVIEW_IN_PROGRESS"


def is_new_stack(cloudformation: Any, name: str) -> bool:
    return _is_new(_stack(cloudformation, name))


def deploy_stack(
    cloudformation: Any,
    name: str,
    *,
    template_url: str,
    parameters: Mapping[str, str],
    declared: list[str],
    progress: Progress,
    poll_s: float = 5.0,
) -> dict[str, str]:
    """Create or update the stack through a change set; return its outputs."""
    creating = _is_new(_stack(cloudformation, name))
    given = [{"ParameterKey": key, "ParameterValue": value} for key, value in parameters.items()]
    kept = (
        []
        if creating
        else [{"ParameterKey": key, "UsePreviousValue": True} for key in declared if key not in parameters]
    )
    change_set = f"trackflow-{int(time.time())}"
    progress(f"{'creating' if creating else 'updating'} stack {name} (change set {change_set})")
    cloudformation.create_change_set(
        StackName=name,
        ChangeSetName=change_set,
        ChangeSetType="CREATE" if creating else "UPDATE",
        TemplateURL=template_url,
        Parameters=given + kept,
        Capabilities=CAPABILITIES,
    )
    while True:
        described = cloudformation.describe_change_set(StackName=name, ChangeSetName=change_set)
        if described["Status"] in ("CREATE_COMPLETE", "FAILED"):
            break
        time.sleep(poll_s)
    if described["Status"] == "FAILED":
        reason = described.get("StatusReason", "")
        if any(text in reason for text in NO_CHANGES):
            progress("the stack is up to date")
            cloudformation.delete_change_set(StackName=name, ChangeSetName=change_set)
            return _outputs(_stack(cloudformation, name))
        raise DeployError(f"CloudFormation refused the change set: {reason}")
    cloudformation.execute_change_set(StackName=name, ChangeSetName=change_set)
    while True:
        stack = _stack(cloudformation, name)
        status = stack["StackStatus"] if stack else "DELETED"
        if not status.endswith("_IN_PROGRESS"):
            break
        progress(f"stack {name}: {status}")
        time.sleep(poll_s)
    if status not in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
        raise DeployError(
            f"stack {name} ended {status}: {stack.get('StackStatusReason', '') if stack else ''}; "
            f"see `aws cloudformation describe-stack-events --stack-name {name}`"
        )
    return _outputs(stack)


def _outputs(stack: Mapping[str, Any] | None) -> dict[str, str]:
    return {item["OutputKey"]: item["OutputValue"] for item in (stack or {}).get("Outputs", [])}


def stack_outputs(cloudformation: Any, name: str) -> dict[str, str]:
    stack = _stack(cloudformation, name)
    if stack is None:
        raise DeployError(f"there is no stack {name}: run `trackflow deploy` without --bootstrap-only first")
    return _outputs(stack)


def snippet(api_key: str, *, script_src: str, endpoint: str | None = None) -> str:
    """The HTML to paste before ``</head>``; ``endpoint`` is the collect base URL when not the script's host."""
    attribute = f' data-endpoint="{endpoint}"' if endpoint else ""
    return "\n".join(
        [
            f'<script async src="{script_src}"{attribute}></script>',
            "<script>",
            "  window.dataLayer = window.dataLayer || [];",
            "  function track() {",
            "    window.dataLayer.push(arguments);",
            "  }",
            f"  track('config', '{api_key}');",
            "</script>",
        ]
    )


def bootstrap(
    settings: Settings,
    outputs: Mapping[str, str],
    *,
    dynamodb: Any,
    project_name: str,
    origins: tuple[str, ...],
    partitions: int,
    failure_topic: str | None,
    script_src: str,
    progress: Progress,
) -> Deployed:
    """Topics, migrations, the first project and the snippet, for a deployed stack's ``outputs``."""
    from trackflow.dev import migrate_clickhouse
    from trackflow.topics import ensure_topics

    if settings.kafka_bootstrap_servers is None:
        raise DeployError("KAFKA_BOOTSTRAP_SERVERS is not set: the topics are created from this machine")
    if settings.clickhouse.embedded:
        raise DeployError("CLICKHOUSE_URL is not set: the migrations run from this machine against the server")
    topics = {settings.events_topic: partitions, settings.dlq_topic: 1}
    if failure_topic:
        topics[failure_topic] = 1
    created = ensure_topics(settings.kafka_bootstrap_servers, topics, security=settings.kafka_security)
    states = [f"{topic} ({'created' if topic in created else 'exists'})" for topic in topics]
    progress(f"topics: {', '.join(states)}")
    applied = migrate_clickhouse(settings, cluster=settings.clickhouse.cluster)
    progress(f"ClickHouse migrations: {', '.join(applied) if applied else 'up to date'}")

    table = outputs.get("ProjectsTableName")
    if not table:
        raise DeployError("the stack has no ProjectsTableName output: is it a TrackFlow stack?")
    store = DynamoProjectStore(dynamodb.Table(table))
    project = next((p for p in store.all() if p.name == project_name), None)
    if project is None:
        project = new_project(project_name, allowed_origins=origins)
        store.put(project)
        progress(f"project {project.name!r} created ({project.project_id}) in {table}")
    else:
        progress(f"project {project.name!r} exists ({project.project_id}) in {table}")
    endpoint = (outputs.get("FunctionUrl") or outputs.get("EndpointURL") or "").rstrip("/")
    return Deployed(dict(outputs), project, snippet(project.api_keys[0], script_src=script_src, endpoint=endpoint))
