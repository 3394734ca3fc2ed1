"""The CloudFormation that ``trackflow package`` merges into Chalice's SAM template.

Chalice writes the functions, their roles and the REST API from ``app.py``;
this package adds what Chalice cannot know: the Kafka mappings that trigger
``ingest`` (``kafka``), least-privilege role policies (``iam``), the function
URL, log retention, concurrency, the generated salt secret and the alarms
(``operations``), and the parameters a deploy sets (``parameters``).

Where AWS's rule sets (cfn-lint with the Serverless Rules, checkov) flag a
resource for a choice made on purpose, the resource's own Metadata skips that
rule with the reason (``RULE_EXCEPTIONS``); ``tests/integration/test_package.py``
runs both rule sets on the packaged template.
"""

from __future__ import annotations

import copy
from typing import Any

from trackflow.stack import iam, kafka, operations
from trackflow.stack.cfn import get_att, if_, ref
from trackflow.stack.exceptions import RULE_EXCEPTIONS, TEMPLATE_EXCEPTIONS, rule_metadata
from trackflow.stack.parameters import CONDITIONS, PARAMETERS

DESCRIPTION = (
    "TrackFlow: collect (REST API and function URL), config and stats; ingest triggered by Kafka; rollup "
    "compaction on a schedule; with least-privilege roles, secrets in Secrets Manager, log retention and alarms."
)


def _environment() -> dict[str, Any]:
    """What every function reads (chalicelib.settings); secrets are ARNs, read at cold start."""
    return {
        "KAFKA_BOOTSTRAP_SERVERS": ref("KafkaBootstrapServers"),
        "KAFKA_SECURITY_PROTOCOL": ref("KafkaSecurityProtocol"),
        "KAFKA_SASL_MECHANISM": ref("KafkaSaslMechanism"),
        "KAFKA_SASL_SECRET_ARN": ref("KafkaSaslSecretArn"),
        "TRACKFLOW_EVENTS_TOPIC": ref("EventsTopic"),
        "TRACKFLOW_DLQ_TOPIC": ref("DeadLetterTopic"),
        "CLICKHOUSE_URL": ref("ClickHouseUrl"),
        "CLICKHOUSE_USER": ref("ClickHouseUser"),
        "CLICKHOUSE_PASSWORD_SECRET_ARN": ref("ClickHousePasswordSecretArn"),
        "CLICKHOUSE_DATABASE": ref("ClickHouseDatabase"),
        "CLICKHOUSE_CLUSTER": ref("ClickHouseCluster"),
        "TRACKFLOW_PROJECTS_TABLE": ref("ProjectsTable"),
        "TRACKFLOW_SALT_SECRET_ARN": ref("HashSaltSecret"),
    }


def _projects_table() -> dict[str, Any]:
    return {
        "Type": "AWS::DynamoDB::Table",
        "DeletionPolicy": "Retain",
        "UpdateReplacePolicy": "Retain",
        "Properties": {
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "BillingMode": "PAY_PER_REQUEST",
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            "SSESpecification": {"SSEEnabled": True},
        },
    }


def _rest_api() -> dict[str, Any]:
    throttling = {
        "ResourcePath": "/*",
        "HttpMethod": "*",
        "ThrottlingRateLimit": ref("ThrottlingRateLimit"),
        "ThrottlingBurstLimit": ref("ThrottlingBurstLimit"),
    }
    return {"Properties": {"MethodSettings": [throttling]}}


def _outputs() -> dict[str, Any]:
    return {
        "IngestFunctionName": {"Value": ref("Ingest")},
        "ProjectsTableName": {"Value": ref("ProjectsTable")},
        "HashSaltSecretArn": {"Value": ref("HashSaltSecret")},
        "FunctionUrl": {
            "Value": get_att("UrlHandlerFunctionUrl", "FunctionUrl"),
            "Description": "Collect, config and stats behind the function URL: point the tracker's endpoint here.",
        },
    }


def merge_template() -> dict[str, Any]:
    """The template to merge into ``chalice package`` output (a fresh dict each call)."""
    resources: dict[str, Any] = {
        "RestAPI": _rest_api(),
        "ProjectsTable": _projects_table(),
        **kafka.mappings(),
        **operations.function_url(),
        **iam.roles(),
        **operations.log_groups(),
        **operations.function_properties(),
        **operations.salt_secret(),
        **operations.alarms(),
    }
    for name, rules in RULE_EXCEPTIONS.items():
        resources.setdefault(name, {}).setdefault("Metadata", {}).update(rule_metadata(rules))
    return copy.deepcopy(
        {
            "AWSTemplateFormatVersion": "2010-09-09",
            "Description": DESCRIPTION,
            "Metadata": rule_metadata(TEMPLATE_EXCEPTIONS),
            "Parameters": PARAMETERS,
            "Conditions": CONDITIONS,
            "Resources": resources,
            "Outputs": _outputs(),
            "Globals": {
                "Function": {
                    "Environment": {"Variables": _environment()},
                    "VpcConfig": if_(
                        "HasVpc", {"SubnetIds": ref("SubnetIds"), "SecurityGroupIds": ref("SecurityGroupIds")}
                    ),
                }
            },
        }
    )
