"""The stack's parameters and the conditions derived from them.

Every knob a deployer can turn is a parameter here, with a default that works
for a first deploy; ``trackflow deploy`` fills the Kafka and ClickHouse ones
from this machine's settings. Conditions turn optional parameters (a VPC, a
SASL secret, a failure destination, an alarm topic) into present-or-absent
resources and properties.
"""

from __future__ import annotations

from typing import Any

from trackflow.stack.cfn import and_, condition, equals, list_item, not_, not_empty, or_, ref

# CommaDelimitedList parameters are read item by item (CloudFormation cannot
# loop): this many subnets and security groups reach the Kafka mapping.
MAX_SUBNETS = 6
MAX_SECURITY_GROUPS = 5
# The values CloudWatch Logs accepts for a retention period, in days.
LOG_RETENTION_DAYS = [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922]
DEFAULT_FAILURE_DESTINATION = "kafka://trackflow.events.failed"
DEFAULT_BATCH_SIZE = 2000
DEFAULT_MAXIMUM_RETRY_ATTEMPTS = 10
DEFAULT_MAXIMUM_RECORD_AGE_S = -1
# Off: ingest dead-letters what it cannot store and raises only when it cannot write at all (ClickHouse or the
# dead-letter topic down), which splitting cannot help; halves would only multiply an outage's retries.
DEFAULT_BISECT = "false"
DEFAULT_BATCHING_WINDOW_S = 1
SECRET_ARN_PATTERN = r"^$|^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:.+$"


def _string(description: str, default: str | None = None, **extra: Any) -> dict[str, Any]:
    parameter: dict[str, Any] = {"Type": "String", "Description": description, **extra}
    if default is not None:
        parameter["Default"] = default
    return parameter


def _number(description: str, default: int, minimum: int, maximum: int) -> dict[str, Any]:
    return {"Type": "Number", "Description": description, "Default": default, "MinValue": minimum, "MaxValue": maximum}


def _list(description: str) -> dict[str, Any]:
    return {"Type": "CommaDelimitedList", "Description": description, "Default": ""}


PARAMETERS: dict[str, dict[str, Any]] = {
    # -- Kafka -------------------------------------------------------------------------------------------------
    "KafkaSource": _string(
        "self-managed: any Kafka reachable at KafkaBootstrapServers. msk: an Amazon MSK cluster given by MskClusterArn.",
        "self-managed",
        AllowedValues=["self-managed", "msk"],
    ),
    "KafkaBootstrapServers": _string(
        "Comma-separated host:port list; the functions produce here, and the self-managed mapping consumes from here."
    ),
    "MskClusterArn": _string("ARN of the MSK cluster (msk only).", ""),
    "KafkaSecurityProtocol": _string(
        "How collect and ingest's dead-letter producer talk to Kafka (KAFKA_SECURITY_PROTOCOL).",
        "PLAINTEXT",
        AllowedValues=["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"],
    ),
    "KafkaSaslMechanism": _string(
        "With SASL_*: SCRAM-SHA-512 or SCRAM-SHA-256 or PLAIN (credentials in KafkaSaslSecretArn; the mapping "
        "authenticates with SASL_SCRAM_512_AUTH, SASL_SCRAM_256_AUTH or BASIC_AUTH), or OAUTHBEARER for MSK IAM "
        "(the roles sign the token). MSK takes SCRAM-SHA-512 or OAUTHBEARER.",
        "",
        AllowedValues=["", "SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN", "OAUTHBEARER"],
    ),
    "KafkaSaslSecretArn": _string(
        'Secrets Manager ARN holding {"username", "password"} for SASL (empty for none). For MSK its name must '
        "start with AmazonMSK_ and it must be encrypted with the customer-managed key in SecretsKmsKeyArn.",
        "",
        AllowedPattern=SECRET_ARN_PATTERN,
    ),
    "SecretsKmsKeyArn": _string(
        "Customer-managed KMS key that encrypts the secrets (required for an MSK SCRAM secret; optional otherwise). "
        "The roles that read a secret may kms:Decrypt with it through Secrets Manager only.",
        "",
    ),
    "EventsTopic": _string("Topic collect produces to and ingest consumes.", "trackflow.events"),
    "DeadLetterTopic": _string(
        "Topic for records and events ingest cannot store, with the reason.", "trackflow.events.dlq"
    ),
    "BatchSize": _number(
        "Most records per ingest invocation. The mapping also closes a batch at 6 MB, Lambda's invoke payload limit.",
        DEFAULT_BATCH_SIZE,
        1,
        10000,
    ),
    "MaximumBatchingWindowInSeconds": _number("Longest wait to fill a batch.", DEFAULT_BATCHING_WINDOW_S, 0, 300),
    "OnFailureDestination": _string(
        "Where the mapping puts records whose batch still fails after the retries, or that are older than "
        "MaximumRecordAgeInSeconds: kafka://TOPIC on the same cluster, or an S3 bucket ARN. Empty: no destination, "
        "and the mapping retries for ever (nothing is dropped; a partition can stall).",
        DEFAULT_FAILURE_DESTINATION,
    ),
    "MaximumRetryAttempts": _number(
        "Retries of a failing batch before its records go to OnFailureDestination (only with a destination).",
        DEFAULT_MAXIMUM_RETRY_ATTEMPTS,
        0,
        10000,
    ),
    "MaximumRecordAgeInSeconds": _number(
        "Records older than this go to OnFailureDestination instead of ingest (-1: no limit; else 60..604800).",
        DEFAULT_MAXIMUM_RECORD_AGE_S,
        -1,
        604800,
    ),
    "BisectBatchOnFunctionError": _string(
        "Split a failing batch in two and retry each half. Off by default: ingest dead-letters bad records itself and "
        "fails only when it cannot write at all, which halves do not help. Safe either way (idempotent per event_id).",
        DEFAULT_BISECT,
        AllowedValues=["true", "false"],
    ),
    "EventPollerMode": _string(
        "provisioned: event pollers kept running (about $135 a month each), which the retry, bisection and "
        "failure-destination settings need. on-demand: no poller charge; a failing batch is then retried until it "
        "succeeds (nothing is dropped; the partition waits, e.g. through a ClickHouse outage).",
        "provisioned",
        AllowedValues=["provisioned", "on-demand"],
    ),
    "MinimumPollers": _number("Provisioned event pollers kept running (the retry settings need them).", 1, 1, 200),
    "MaximumPollers": _number("Most provisioned event pollers; one reads about 5 MB/s.", 10, 1, 2000),
    # -- ClickHouse --------------------------------------------------------------------------------------------
    "ClickHouseUrl": _string("http(s)://host:port of the ClickHouse HTTP interface."),
    "ClickHouseUser": _string("ClickHouse user.", "default"),
    "ClickHousePasswordSecretArn": _string(
        "Secrets Manager ARN holding the ClickHouse password (the plain string, or JSON with a password key); "
        "read at cold start. Empty: no password. trackflow deploy creates it from CLICKHOUSE_PASSWORD.",
        "",
        AllowedPattern=SECRET_ARN_PATTERN,
    ),
    "ClickHouseDatabase": _string("ClickHouse database.", "trackflow"),
    "ClickHouseCluster": _string(
        "Cluster name when ClickHouse is a cluster migrated with `trackflow migrate --cluster NAME`. Empty for one server.",
        "",
    ),
    # -- front doors -------------------------------------------------------------------------------------------
    "ThrottlingRateLimit": _number("API Gateway: steady requests per second across all callers.", 1000, 1, 100000),
    "ThrottlingBurstLimit": _number("API Gateway: burst of requests across all callers.", 2000, 1, 100000),
    "FunctionUrlCorsOrigins": {
        "Type": "CommaDelimitedList",
        "Default": "*",
        "Description": "Origins the function URL's CORS admits (the projects' sites, or *). Collect still checks "
        "each project's allowed origins.",
    },
    "CollectConcurrencyCap": _number(
        "Reserved (and most) concurrent instances of each collect front door; 0: no cap, the account's pool.",
        0,
        0,
        10000,
    ),
    "IngestReservedConcurrency": _number(
        "Concurrent ingest instances kept for ingest whatever collect does; at least the events topic's partitions.",
        10,
        1,
        10000,
    ),
    # -- network -----------------------------------------------------------------------------------------------
    "SubnetIds": _list(
        f"Private subnets for the functions and the self-managed Kafka mapping (at most {MAX_SUBNETS}); give them a "
        "NAT or VPC endpoints for DynamoDB, Secrets Manager and CloudWatch. Empty: no VPC."
    ),
    "SecurityGroupIds": _list(
        f"Security groups for the functions and the mapping in SubnetIds (at most {MAX_SECURITY_GROUPS}); they must "
        "reach the brokers and ClickHouse."
    ),
    # -- operations --------------------------------------------------------------------------------------------
    "LogRetentionDays": {
        "Type": "Number",
        "Default": 30,
        "AllowedValues": LOG_RETENTION_DAYS,
        "Description": "Days CloudWatch Logs keeps each function's log.",
    },
    "AlarmTopicArn": _string("SNS topic the alarms notify (empty: alarms without actions).", ""),
    "OffsetLagAlarmThreshold": _number("Records behind on the events topic before the lag alarm.", 100000, 1, 10**9),
    "CompactionAgeAlarmSeconds": _number(
        "Seconds the oldest day waiting for rollup compaction may wait before the alarm.", 1800, 300, 604800
    ),
}

_AT_MSK = equals(ref("KafkaSource"), "msk")
_VPC = not_(equals({"Fn::Join": ["", ref("SubnetIds")]}, ""))

CONDITIONS: dict[str, Any] = {
    "IsMsk": _AT_MSK,
    "IsSelfManaged": not_(condition("IsMsk")),
    "HasSaslSecret": not_empty("KafkaSaslSecretArn"),
    "HasSecretsKmsKey": not_empty("SecretsKmsKeyArn"),
    "HasClickHousePassword": not_empty("ClickHousePasswordSecretArn"),
    "HasVpc": _VPC,
    "IsProvisioned": equals(ref("EventPollerMode"), "provisioned"),
    "HasFailureDestination": and_(condition("IsProvisioned"), not_empty("OnFailureDestination")),
    "IsS3Destination": equals(
        {
            "Fn::Select": [
                0,
                {"Fn::Split": [":", {"Fn::Join": ["", [ref("OnFailureDestination"), ":"]]}]},
            ]
        },
        "arn",
    ),
    "HasAlarmTopic": not_empty("AlarmTopicArn"),
    "HasCollectCap": not_(equals(ref("CollectConcurrencyCap"), 0)),
    "IsScram256": equals(ref("KafkaSaslMechanism"), "SCRAM-SHA-256"),
    "IsPlain": equals(ref("KafkaSaslMechanism"), "PLAIN"),
    "HasMskScram": and_(condition("IsMsk"), condition("HasSaslSecret")),
    "HasSelfManagedAccess": and_(condition("IsSelfManaged"), or_(condition("HasSaslSecret"), condition("HasVpc"))),
    "HasSelfManagedFailureDestination": and_(condition("IsSelfManaged"), condition("HasFailureDestination")),
    "HasMskFailureDestination": and_(condition("IsMsk"), condition("HasFailureDestination")),
}
for _index in range(MAX_SUBNETS):
    CONDITIONS[f"HasSubnet{_index}"] = not_(equals(list_item("SubnetIds", _index, room=MAX_SUBNETS), ""))
for _index in range(MAX_SECURITY_GROUPS):
    CONDITIONS[f"HasSecurityGroup{_index}"] = not_(
        equals(list_item("SecurityGroupIds", _index, room=MAX_SECURITY_GROUPS), "")
    )
