"""trackflow.deploy: the CloudFormation conversation (botocore's Stubber) and the parameters it sends."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from chalicelib.settings import load_settings
from trackflow.deploy import (
    DeployError,
    aws_region,
    check_msk,
    deploy_stack,
    failure_topic,
    snippet,
    stack_parameters,
)

URL = "https://s3.us-east-1.amazonaws.com/bucket/trackflow/abc.json"
OUTPUTS = [{"OutputKey": "FunctionUrl", "OutputValue": "https://abc.lambda-url.us-east-1.on.aws/"}]


@pytest.fixture
def cloudformation() -> Any:
    return boto3.client("cloudformation", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")


def _missing(stub: Stubber) -> None:
    stub.add_client_error(
        "describe_stacks", service_message="Stack with id trackflow does not exist", http_status_code=400
    )


def _stack(stub: Stubber, status: str, outputs: list[dict[str, str]] | None = None) -> None:
    stack = {"StackName": "trackflow", "StackStatus": status, "CreationTime": "2026-11-27T00:00:00Z"}
    if outputs:
        stack["Outputs"] = outputs
    stub.add_response("describe_stacks", {"Stacks": [stack]})


def _change_set(kind: str, parameters: list[dict[str, Any]]) -> dict[str, Any]:
    """The CreateChangeSet request deploy_stack must send."""
    return {
        "StackName": "trackflow",
        "ChangeSetName": ANY,
        "ChangeSetType": kind,
        "TemplateURL": URL,
        "Parameters": parameters,
        "Capabilities": ["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"],
    }


def test_a_new_stack_is_created_through_a_change_set_with_both_capabilities(cloudformation: Any) -> None:
    with Stubber(cloudformation) as stub:
        _missing(stub)
        stub.add_response(
            "create_change_set",
            {"Id": "cs"},
            _change_set("CREATE", [{"ParameterKey": "KafkaBootstrapServers", "ParameterValue": "b:9092"}]),
        )
        stub.add_response("describe_change_set", {"Status": "CREATE_PENDING"})
        stub.add_response("describe_change_set", {"Status": "CREATE_COMPLETE"})
        stub.add_response("execute_change_set", {}, {"StackName": "trackflow", "ChangeSetName": ANY})
        _stack(stub, "CREATE_IN_PROGRESS")
        _stack(stub, "CREATE_COMPLETE", OUTPUTS)
        outputs = deploy_stack(
            cloudformation,
            "trackflow",
            template_url=URL,
            parameters={"KafkaBootstrapServers": "b:9092"},
            declared=["KafkaBootstrapServers", "BatchSize"],
            progress=lambda _: None,
            poll_s=0,
        )
        stub.assert_no_pending_responses()
    assert outputs == {"FunctionUrl": "https://abc.lambda-url.us-east-1.on.aws/"}


def test_an_update_keeps_every_parameter_not_given(cloudformation: Any) -> None:
    with Stubber(cloudformation) as stub:
        _stack(stub, "CREATE_COMPLETE", OUTPUTS)
        stub.add_response(
            "create_change_set",
            {"Id": "cs"},
            _change_set(
                "UPDATE",
                [
                    {"ParameterKey": "BatchSize", "ParameterValue": "500"},
                    {"ParameterKey": "LogRetentionDays", "UsePreviousValue": True},
                ],
            ),
        )
        stub.add_response(
            "describe_change_set",
            {"Status": "FAILED", "StatusReason": "The submitted information didn't contain changes."},
        )
        stub.add_response("delete_change_set", {})
        _stack(stub, "UPDATE_COMPLETE", OUTPUTS)
        outputs = deploy_stack(
            cloudformation,
            "trackflow",
            template_url=URL,
            parameters={"BatchSize": "500"},
            declared=["BatchSize", "LogRetentionDays"],
            progress=lambda _: None,
            poll_s=0,
        )
    assert outputs["FunctionUrl"].startswith("https://")


def test_a_rolled_back_stack_is_an_error_that_says_where_to_look(cloudformation: Any) -> None:
    with Stubber(cloudformation) as stub:
        _missing(stub)
        stub.add_response("create_change_set", {"Id": "cs"})
        stub.add_response("describe_change_set", {"Status": "CREATE_COMPLETE"})
        stub.add_response("execute_change_set", {})
        _stack(stub, "ROLLBACK_COMPLETE")
        with pytest.raises(DeployError, match=r"ROLLBACK_COMPLETE.*describe-stack-events"):
            deploy_stack(
                cloudformation, "trackflow", template_url=URL, parameters={}, declared=[], progress=print, poll_s=0
            )


def test_parameters_come_from_this_machines_settings_with_no_secret_among_them() -> None:
    settings = load_settings(
        {
            "KAFKA_BOOTSTRAP_SERVERS": "b-1:9096",
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KAFKA_SASL_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:1:secret:k",
            "CLICKHOUSE_URL": "https://ch.example:8443",
            "CLICKHOUSE_PASSWORD": "pw",
            "CLICKHOUSE_CLUSTER": "analytics",
        }
    )
    params = stack_parameters(settings, {"BatchSize": "500"}, creating=True)
    assert params["KafkaBootstrapServers"] == "b-1:9096"
    assert params["ClickHouseUrl"] == "https://ch.example:8443"
    assert params["ClickHouseCluster"] == "analytics"  # compaction deletes from the local tables
    assert (params["KafkaSecurityProtocol"], params["KafkaSaslMechanism"]) == ("SASL_SSL", "SCRAM-SHA-512")
    assert params["KafkaSaslSecretArn"].endswith(":secret:k")
    assert params["BatchSize"] == "500"
    assert "pw" not in params.values()  # the password travels as a secret's ARN (clickhouse_secret), never as is
    assert "SaltSecret" not in params  # the stack generates its salt secret


MSK = "arn:aws:kafka:us-east-1:123456789012:cluster/demo/751d2973-a626-431c-9d4e-d7975eb44dd7-2"


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({}, "MskClusterArn"),
        ({"MskClusterArn": MSK, "KafkaSaslMechanism": "SCRAM-SHA-256"}, "SCRAM-SHA-512 or IAM"),
        (
            {
                "MskClusterArn": MSK,
                "KafkaSaslMechanism": "SCRAM-SHA-512",
                "KafkaSaslSecretArn": "arn:aws:secretsmanager:us-east-1:1:secret:kafka-AbC",
            },
            "AmazonMSK_",
        ),
        (
            {
                "MskClusterArn": MSK,
                "KafkaSaslMechanism": "SCRAM-SHA-512",
                "KafkaSaslSecretArn": "arn:aws:secretsmanager:us-east-1:1:secret:AmazonMSK_kafka-AbC",
            },
            "customer-managed KMS key",
        ),
    ],
)
def test_an_msk_setup_aws_would_refuse_is_refused_before_deploying(params: dict[str, str], says: str) -> None:
    with pytest.raises(DeployError, match=says):
        check_msk({"KafkaSource": "msk", **params})
    check_msk({"KafkaSource": "msk", "MskClusterArn": MSK, "KafkaSaslMechanism": "OAUTHBEARER"})


class _Session:
    region_name = None


def test_no_region_says_to_set_aws_default_region() -> None:
    with pytest.raises(DeployError, match="AWS_DEFAULT_REGION"):
        aws_region(_Session())


def test_a_new_stack_without_kafka_says_which_variable_to_set() -> None:
    with pytest.raises(DeployError, match="KAFKA_BOOTSTRAP_SERVERS"):
        stack_parameters(load_settings({"CLICKHOUSE_URL": "http://ch:8123"}), {}, creating=True)


def test_the_failure_topic_follows_the_destination_parameter() -> None:
    assert failure_topic({}) == "trackflow.events.failed"
    assert failure_topic({"OnFailureDestination": "kafka://failed"}) == "failed"
    assert failure_topic({"OnFailureDestination": "arn:aws:s3:::bucket"}) is None


def test_the_snippet_points_the_tracker_at_the_function_url() -> None:
    html = snippet("key123", script_src="https://cdn.shop.example/tracker.js", endpoint="https://x.on.aws")
    assert '<script async src="https://cdn.shop.example/tracker.js" data-endpoint="https://x.on.aws"></script>' in html
    assert "track('config', 'key123');" in html
