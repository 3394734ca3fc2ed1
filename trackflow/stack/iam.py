"""One least-privilege role per function, limited to what the stack creates or is given.

The only ``*`` resources are the EC2 network-interface actions AWS requires on
``*`` (functions in a VPC, the MSK mapping). Secrets are readable only by the
functions that use them, and a customer-managed key may decrypt them only
through Secrets Manager.
"""

from __future__ import annotations

from typing import Any

from trackflow.stack.cfn import get_att, if_, ref, sub
from trackflow.stack.kafka import CONSUMER_GROUP

_ENI_ACTIONS = [
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
]
_MSK_CLUSTER_PARTS = {
    "Name": {"Fn::Select": [1, {"Fn::Split": ["/", ref("MskClusterArn")]}]},
    "Id": {"Fn::Select": [2, {"Fn::Split": ["/", ref("MskClusterArn")]}]},
}


def _msk(kind: str, name: str) -> dict[str, Any]:
    return sub(
        f"arn:${{AWS::Partition}}:kafka:${{AWS::Region}}:${{AWS::AccountId}}:{kind}/${{Name}}/${{Id}}/{name}",
        _MSK_CLUSTER_PARTS,
    )


def _statement(sid: str, actions: list[str], resource: Any, **extra: Any) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resource, **extra}


def _logs(function: str) -> dict[str, Any]:
    """Writing to the function's own log group (its ARN ends in ``:*``, the streams in it).

    Named by the log group, never by the function: the function refers to its
    role, so a role referring to its function would be a circular dependency.
    """
    return _statement("Logs", ["logs:CreateLogStream", "logs:PutLogEvents"], get_att(f"{function}LogGroup", "Arn"))


def _secret(sid: str, secret: Any, condition: str | None) -> Any:
    statement = _statement(sid, ["secretsmanager:GetSecretValue"], secret)
    return if_(condition, statement) if condition else statement


def _decrypt_secrets() -> Any:
    via = sub("secretsmanager.${AWS::Region}.amazonaws.com")
    return if_(
        "HasSecretsKmsKey",
        _statement(
            "DecryptSecrets",
            ["kms:Decrypt"],
            ref("SecretsKmsKeyArn"),
            Condition={"StringEquals": {"kms:ViaService": via}},
        ),
    )


def _common(function: str) -> list[Any]:
    return [_logs(function), if_("HasVpc", _statement("VpcNetworkInterfaces", _ENI_ACTIONS, "*"))]


def _clickhouse_secret() -> Any:
    return _secret("ClickHousePassword", ref("ClickHousePasswordSecretArn"), "HasClickHousePassword")


def _collect_statements(function: str) -> list[Any]:
    """What collect, config, stats and health need: projects, the salt, Kafka, ClickHouse."""
    return [
        *_common(function),
        _statement("ProjectsRead", ["dynamodb:GetItem", "dynamodb:Scan"], get_att("ProjectsTable", "Arn")),
        _secret("HashSalt", ref("HashSaltSecret"), None),
        _secret("KafkaSaslSecret", ref("KafkaSaslSecretArn"), "HasSaslSecret"),
        _clickhouse_secret(),
        _decrypt_secrets(),
        if_(
            "IsMsk",
            _statement(
                "MskProduce",
                ["kafka-cluster:Connect", "kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"],
                [ref("MskClusterArn"), _msk("topic", "*")],
            ),
        ),
    ]


def _ingest_statements() -> list[Any]:
    """The mapping reads Kafka (and its secret) with this role; ingest writes ClickHouse and the dead letters."""
    mapping_actions = [
        "kafka:DescribeCluster",
        "kafka:DescribeClusterV2",
        "kafka:GetBootstrapBrokers",
        "kafka-cluster:Connect",
        "kafka-cluster:DescribeClusterDynamicConfiguration",
        "kafka-cluster:DescribeTopic",
        "kafka-cluster:ReadData",
        "kafka-cluster:WriteData",
        "kafka-cluster:DescribeGroup",
        "kafka-cluster:AlterGroup",
    ]
    network = [
        "ec2:CreateNetworkInterface",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DeleteNetworkInterface",
        "ec2:DescribeVpcs",
        "ec2:DescribeSubnets",
        "ec2:DescribeSecurityGroups",
    ]
    return [
        *_common("Ingest"),
        _secret("KafkaSaslSecret", ref("KafkaSaslSecretArn"), "HasSaslSecret"),
        _clickhouse_secret(),
        _decrypt_secrets(),
        if_(
            "IsMsk",
            _statement(
                "MskMapping",
                mapping_actions,
                [ref("MskClusterArn"), _msk("topic", "*"), _msk("group", CONSUMER_GROUP)],
            ),
        ),
        if_("IsMsk", _statement("MskMappingNetwork", network, "*")),
        if_(
            "IsS3Destination",
            _statement(
                "FailureDestinationS3",
                ["s3:PutObject", "s3:ListBucket"],
                [ref("OnFailureDestination"), sub("${OnFailureDestination}/*")],
            ),
        ),
    ]


def _role(name: str, statements: list[Any]) -> dict[str, Any]:
    document = {"Version": "2012-10-17", "Statement": statements}
    return {"Properties": {"Policies": [{"PolicyName": f"{name}Policy", "PolicyDocument": document}]}}


def roles() -> dict[str, Any]:
    """Policies merged into the roles Chalice writes (it names them after the functions)."""
    return {
        "ApiHandlerRole": _role("ApiHandlerRole", _collect_statements("APIHandler")),
        "UrlHandlerRole": _role("UrlHandlerRole", _collect_statements("UrlHandler")),
        "IngestRole": _role("IngestRole", _ingest_statements()),
        "CompactRole": _role("CompactRole", [*_common("Compact"), _clickhouse_secret(), _decrypt_secrets()]),
    }
