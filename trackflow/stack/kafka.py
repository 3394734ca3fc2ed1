"""The Kafka event source mappings that trigger ``ingest``: self-managed Kafka or MSK, with failure handling.

Both read the events topic as the ``trackflow-ingest`` group in provisioned
mode (which the retry controls need), retry a failing batch a bounded number
of times with bisection when there is a failure destination (for ever when
there is none: nothing is dropped), and publish their event-count metrics,
which the failure-destination alarm reads.

Access configurations follow the parameters: the self-managed mapping reaches
a private cluster through ``VPC_SUBNET``/``VPC_SECURITY_GROUP`` entries and
authenticates with the SASL type that ``KafkaSaslMechanism`` names; the MSK
mapping uses SCRAM-512 with the secret, or IAM (no entry) otherwise.
"""

from __future__ import annotations

from typing import Any

from trackflow.stack.cfn import NO_VALUE, if_, list_item, ref
from trackflow.stack.parameters import MAX_SECURITY_GROUPS, MAX_SUBNETS

CONSUMER_GROUP = "trackflow-ingest"
SASL_TYPE = if_("IsScram256", "SASL_SCRAM_256_AUTH", if_("IsPlain", "BASIC_AUTH", "SASL_SCRAM_512_AUTH"))


def _common() -> dict[str, Any]:
    return {
        "FunctionName": ref("Ingest"),
        "Topics": [ref("EventsTopic")],
        "StartingPosition": "TRIM_HORIZON",
        "BatchSize": ref("BatchSize"),
        "MaximumBatchingWindowInSeconds": ref("MaximumBatchingWindowInSeconds"),
        # Bounded only when there is somewhere to put what still fails: never dropped. The retry
        # controls exist in provisioned mode only; on demand, a failing batch is retried until it succeeds.
        "MaximumRetryAttempts": if_("HasFailureDestination", ref("MaximumRetryAttempts"), if_("IsProvisioned", -1)),
        "MaximumRecordAgeInSeconds": if_(
            "HasFailureDestination", ref("MaximumRecordAgeInSeconds"), if_("IsProvisioned", -1)
        ),
        "BisectBatchOnFunctionError": if_("IsProvisioned", ref("BisectBatchOnFunctionError")),
        "DestinationConfig": if_("HasFailureDestination", {"OnFailure": {"Destination": ref("OnFailureDestination")}}),
        "ProvisionedPollerConfig": if_(
            "IsProvisioned", {"MinimumPollers": ref("MinimumPollers"), "MaximumPollers": ref("MaximumPollers")}
        ),
        "MetricsConfig": {"Metrics": ["EventCount", "ErrorCount"]},
    }


def self_managed_access() -> list[Any]:
    """SourceAccessConfigurations of the self-managed mapping, each entry present only when its parameter is set."""
    entries: list[Any] = [if_("HasSaslSecret", {"Type": SASL_TYPE, "URI": ref("KafkaSaslSecretArn")})]
    for index in range(MAX_SUBNETS):
        subnet = list_item("SubnetIds", index, room=MAX_SUBNETS)
        entries.append(if_(f"HasSubnet{index}", {"Type": "VPC_SUBNET", "URI": {"Fn::Join": ["", ["subnet:", subnet]]}}))
    for index in range(MAX_SECURITY_GROUPS):
        group = list_item("SecurityGroupIds", index, room=MAX_SECURITY_GROUPS)
        entries.append(
            if_(
                f"HasSecurityGroup{index}",
                {"Type": "VPC_SECURITY_GROUP", "URI": {"Fn::Join": ["", ["security_group:", group]]}},
            )
        )
    return entries


def mappings() -> dict[str, Any]:
    self_managed = {
        "Type": "AWS::Lambda::EventSourceMapping",
        "Condition": "IsSelfManaged",
        "Properties": {
            **_common(),
            "SelfManagedEventSource": {
                "Endpoints": {"KafkaBootstrapServers": {"Fn::Split": [",", ref("KafkaBootstrapServers")]}}
            },
            "SelfManagedKafkaEventSourceConfig": {"ConsumerGroupId": CONSUMER_GROUP},
            "SourceAccessConfigurations": if_("HasSelfManagedAccess", self_managed_access(), NO_VALUE),
        },
    }
    msk = {
        "Type": "AWS::Lambda::EventSourceMapping",
        "Condition": "IsMsk",
        "Properties": {
            **_common(),
            "EventSourceArn": ref("MskClusterArn"),
            "AmazonManagedKafkaEventSourceConfig": {"ConsumerGroupId": CONSUMER_GROUP},
            # MSK: SCRAM-512 with an AmazonMSK_ secret, or IAM with the function's role (no entry).
            "SourceAccessConfigurations": if_(
                "HasMskScram", [{"Type": "SASL_SCRAM_512_AUTH", "URI": ref("KafkaSaslSecretArn")}]
            ),
        },
    }
    return {"IngestSelfManagedKafkaMapping": self_managed, "IngestMskMapping": msk}
