"""``trackflow deploy``: from a clone to a tracker snippet that sends to AWS.

The steps, each printed as it runs:

0. find the AWS region the way boto3 does (``AWS_DEFAULT_REGION`` or the
   profile), create the upload bucket there or check that it is there, and
   keep the ClickHouse password in Secrets Manager (``clickhouse_secret``);
1. package the functions (``trackflow.package``) for the chosen architecture;
2. upload ``deployment.zip`` and the template to the bucket, named by their
   content, so an unchanged bundle is not uploaded again;
3. deploy the CloudFormation stack through a change set (the template is a
   SAM template: CloudFormation expands it, hence ``CAPABILITY_AUTO_EXPAND``),
   with every parameter; on an update, parameters not given keep their value;
4. create the Kafka topics (events, dead letters, the mapping's failure topic),
   before step 3 in fact: nothing may produce to a topic that does not exist;
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
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chalicelib.projects import DynamoProjectStore, Project, new_project
from chalicelib.settings import Settings
from trackflow.stack.parameters import DEFAULT_FAILURE_DESTINATION

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


# What IAM lets the person (or CI role) who runs `trackflow deploy` do; docs/deploy.md lists it too.
DEPLOYER_PERMISSIONS = (
    "cloudformation:CreateChangeSet, DescribeChangeSet, ExecuteChangeSet, DeleteChangeSet, DescribeStacks "
    "(on the stack); s3:CreateBucket, GetBucketLocation, ListBucket, PutObject, GetObject, PutBucketPublicAccessBlock "
    "(on the upload bucket); secretsmanager:CreateSecret, PutSecretValue, DescribeSecret (on <stack>/*); "
    "iam:PassRole and iam:CreateRole/PutRolePolicy/DeleteRolePolicy (the stack's roles), and what the stack creates "
    "(Lambda, API Gateway, DynamoDB, Logs, CloudWatch alarms, Secrets Manager, EventBridge)"
)


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
        params["ClickHouseUser"] = clickhouse.user
        params["ClickHouseDatabase"] = clickhouse.database
        if clickhouse.password_secret_arn:
            params["ClickHousePasswordSecretArn"] = clickhouse.password_secret_arn
        if clickhouse.cluster:
            params["ClickHouseCluster"] = clickhouse.cluster
    params["KafkaSecurityProtocol"] = security.protocol
    if security.mechanism:
        params["KafkaSaslMechanism"] = security.mechanism
    if security.secret_arn:
        params["KafkaSaslSecretArn"] = security.secret_arn
    params.update(overrides)
    for required in ("KafkaBootstrapServers", "ClickHouseUrl"):
        if creating and not params.get(required):
            env = "KAFKA_BOOTSTRAP_SERVERS" if required == "KafkaBootstrapServers" else "CLICKHOUSE_URL"
            raise DeployError(f"{required} is not set: export {env}, or pass --param {required}=...")
    check_msk(params)
    return params


def check_msk(params: Mapping[str, str]) -> None:
    """Refuse an MSK setup AWS would refuse later: what the mapping and MSK's SCRAM secrets require."""
    if params.get("KafkaSource") != "msk":
        return
    if not params.get("MskClusterArn", "").startswith("arn:"):
        raise DeployError("KafkaSource=msk needs --param MskClusterArn=arn:aws:kafka:...")
    mechanism = params.get("KafkaSaslMechanism", "")
    if mechanism not in ("SCRAM-SHA-512", "OAUTHBEARER"):
        raise DeployError(
            f"MSK authenticates with SCRAM-SHA-512 or IAM (OAUTHBEARER), not {mechanism or 'none'}: "
            "set KAFKA_SASL_MECHANISM (and KAFKA_SECURITY_PROTOCOL=SASL_SSL)"
        )
    if mechanism == "SCRAM-SHA-512":
        secret = params.get("KafkaSaslSecretArn", "")
        name = secret.split(":secret:", 1)[-1]
        if not name.startswith("AmazonMSK_"):
            raise DeployError(
                f"MSK reads SCRAM credentials only from secrets named AmazonMSK_...; {secret or 'no secret'} "
                "is not one (set KAFKA_SASL_SECRET_ARN)"
            )
        if not params.get("SecretsKmsKeyArn"):
            raise DeployError(
                "an MSK SCRAM secret must be encrypted with a customer-managed KMS key: "
                "pass --param SecretsKmsKeyArn=arn:aws:kms:... (the functions may decrypt with it)"
            )


def aws_region(session: Any) -> str:
    """The region boto3 will use (AWS_DEFAULT_REGION or the profile's); DeployError saying how to set one."""
    region = session.region_name
    if not region:
        raise DeployError(
            "no AWS region: export AWS_DEFAULT_REGION=eu-west-1 (boto3 does not read AWS_REGION), "
            "or set region in your AWS profile"
        )
    return str(region)


def ensure_bucket(s3: Any, bucket: str, region: str, progress: Progress) -> None:
    """Create the upload bucket in ``region`` (private), or check that it is there; Lambda needs the same region."""
    try:
        s3.head_bucket(Bucket=bucket)
    except s3.exceptions.ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code"))
        if code in ("403", "AccessDenied", "Forbidden"):
            raise DeployError(
                f"bucket {bucket} exists but this account cannot use it: pick another --bucket, "
                "or grant s3:ListBucket, s3:GetObject and s3:PutObject on it"
            ) from None
        if code not in ("404", "NoSuchBucket", "NotFound"):
            raise
        location = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        s3.create_bucket(Bucket=bucket, **location)
        s3.put_public_access_block(
            Bucket=bucket,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True,
            },
        )
        progress(f"created bucket s3://{bucket} in {region} (private)")
        return
    where = s3.get_bucket_location(Bucket=bucket).get("LocationConstraint") or "us-east-1"
    if where != region:
        raise DeployError(
            f"bucket {bucket} is in {where}, the stack goes to {region}: Lambda takes code only from its own "
            f"region; use a bucket in {region} or export AWS_DEFAULT_REGION={where}"
        )
    progress(f"bucket s3://{bucket} is in {region}")


def clickhouse_secret(
    secretsmanager: Any, stack_name: str, password: str, *, kms_key: str | None, progress: Progress
) -> str:
    """Keep CLICKHOUSE_PASSWORD in the secret ``<stack>/clickhouse-password`` (created or updated); its ARN."""
    name = f"{stack_name}/clickhouse-password"
    try:
        arn = secretsmanager.describe_secret(SecretId=name)["ARN"]
    except secretsmanager.exceptions.ResourceNotFoundException:
        extra = {"KmsKeyId": kms_key} if kms_key else {}
        arn = secretsmanager.create_secret(
            Name=name, SecretString=password, Description="TrackFlow: the ClickHouse password", **extra
        )["ARN"]
        progress(f"ClickHouse password kept in secret {name}")
        return str(arn)
    secretsmanager.put_secret_value(SecretId=arn, SecretString=password)
    progress(f"ClickHouse password updated in secret {name}")
    return str(arn)


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


def failure_topic(parameters: Mapping[str, str]) -> str | None:
    """The Kafka topic the mapping hands failed records to, when its destination is one."""
    from trackflow.mapping import destination_topic

    return destination_topic(parameters.get("OnFailureDestination", DEFAULT_FAILURE_DESTINATION))


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


def create_topics(settings: Settings, *, partitions: int, failure_topic: str | None, progress: Progress) -> None:
    """Every topic, before the stack exists and anything produces: replicated as MSK does, existing ones checked.

    A broker that creates topics on first use would otherwise make one-partition,
    one-copy topics the moment collect produces; and the mapping's failure topic
    must exist before the mapping hands it a record.
    """
    from trackflow.topics import DEFAULT_RETENTION_MS, describe_created, ensure_topics, topic_plan

    if settings.kafka_bootstrap_servers is None:
        raise DeployError("KAFKA_BOOTSTRAP_SERVERS is not set: the topics are created from this machine")
    topics = topic_plan(settings, partitions=partitions, failure_topic=failure_topic)
    try:
        created = ensure_topics(
            settings.kafka_bootstrap_servers,
            topics,
            retention_ms=DEFAULT_RETENTION_MS,
            security=settings.kafka_security,
            verify=True,
        )
        states = describe_created(settings.kafka_bootstrap_servers, list(topics), security=settings.kafka_security)
    except RuntimeError as exc:
        raise DeployError(
            f"{exc}\nThe topics must exist before the stack: create them from a host that reaches Kafka "
            "(`trackflow topics create`), then deploy with --skip-topics"
        ) from exc
    for topic in topics:
        state = states.get(topic)
        progress(f"topic {topic}: {'created' if topic in created else 'exists'}, {state.describe() if state else '?'}")


def bootstrap(
    settings: Settings,
    outputs: Mapping[str, str],
    *,
    dynamodb: Any,
    project_name: str,
    origins: tuple[str, ...],
    script_src: str,
    progress: Progress,
) -> Deployed:
    """Migrations, the first project and the snippet, for a deployed stack's ``outputs``."""
    from trackflow.dev import migrate_clickhouse

    if settings.clickhouse.embedded:
        raise DeployError("CLICKHOUSE_URL is not set: the migrations run from this machine against the server")
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
