"""What keeps the deployed functions safe to run: log retention, concurrency, secrets, the function URL, alarms.

- Each function logs to a log group of the stack's (``LoggingConfig``) that
  keeps ``LogRetentionDays`` days: CloudWatch Logs bills every byte stored.
- Ingest and compact have reserved concurrency, so a flood on collect cannot
  starve them; compact's one instance also means runs never overlap. Each
  collect front door can be capped with ``CollectConcurrencyCap``.
- The visitor-hash salt is a secret the stack generates; the functions read it
  (and the ClickHouse password) from Secrets Manager at cold start, so no
  secret is in their environment.
- The function URL has both permissions AWS requires of a public URL since
  October 2025: ``lambda:InvokeFunctionUrl`` and ``lambda:InvokeFunction``
  (the latter only for calls through the URL).
- Alarms on errors and throttles of every function, the mapping's offset lag,
  records handed to the failure destination, and the age of the oldest day
  waiting for rollup compaction; they notify ``AlarmTopicArn`` when set.
"""

from __future__ import annotations

from typing import Any

from trackflow.stack.cfn import get_att, if_, ref, sub

FUNCTIONS = ("APIHandler", "UrlHandler", "Ingest", "Compact")
COLLECT_FUNCTIONS = ("APIHandler", "UrlHandler")
COMPACTION_AGE_METRIC = "trackflow_compaction_pending_age_seconds"
METRICS_NAMESPACE = "TrackFlow"
COMPACT_CONCURRENCY = 1


def log_group_name(function: str) -> dict[str, Any]:
    return sub(f"/aws/lambda/${{AWS::StackName}}/{function}")


def log_groups() -> dict[str, Any]:
    return {
        f"{function}LogGroup": {
            "Type": "AWS::Logs::LogGroup",
            "Properties": {"LogGroupName": log_group_name(function), "RetentionInDays": ref("LogRetentionDays")},
        }
        for function in FUNCTIONS
    }


def function_properties() -> dict[str, Any]:
    """Properties merged into the functions Chalice writes."""
    reserved = {
        "APIHandler": if_("HasCollectCap", ref("CollectConcurrencyCap")),
        "UrlHandler": if_("HasCollectCap", ref("CollectConcurrencyCap")),
        "Ingest": ref("IngestReservedConcurrency"),
        "Compact": COMPACT_CONCURRENCY,
    }
    return {
        function: {
            "Properties": {
                "LoggingConfig": {"LogGroup": ref(f"{function}LogGroup"), "LogFormat": "Text"},
                "ReservedConcurrentExecutions": reserved[function],
            }
        }
        for function in FUNCTIONS
    }


def salt_secret() -> dict[str, Any]:
    return {
        "HashSaltSecret": {
            "Type": "AWS::SecretsManager::Secret",
            "Properties": {
                "Description": sub("${AWS::StackName}: the secret behind the daily salt of visitor hashes"),
                "GenerateSecretString": {"PasswordLength": 48, "ExcludePunctuation": True},
                "KmsKeyId": if_("HasSecretsKmsKey", ref("SecretsKmsKeyArn")),
            },
        }
    }


def function_url() -> dict[str, Any]:
    return {
        "UrlHandlerFunctionUrl": {
            "Type": "AWS::Lambda::Url",
            "Properties": {
                "TargetFunctionArn": get_att("UrlHandler", "Arn"),
                "AuthType": "NONE",
                "Cors": {
                    "AllowOrigins": ref("FunctionUrlCorsOrigins"),
                    "AllowMethods": ["GET", "POST"],
                    "AllowHeaders": ["content-type", "authorization", "if-none-match"],
                    "ExposeHeaders": ["etag", "retry-after"],
                    "MaxAge": 86400,
                },
            },
        },
        "UrlHandlerFunctionUrlPermission": {
            "Type": "AWS::Lambda::Permission",
            "Properties": {
                "FunctionName": ref("UrlHandler"),
                "Action": "lambda:InvokeFunctionUrl",
                "Principal": "*",
                "FunctionUrlAuthType": "NONE",
            },
        },
        # Required as well since October 2025; InvokedViaFunctionUrl keeps it to calls through the URL.
        "UrlHandlerInvokePermission": {
            "Type": "AWS::Lambda::Permission",
            "Properties": {
                "FunctionName": ref("UrlHandler"),
                "Action": "lambda:InvokeFunction",
                "Principal": "*",
                "InvokedViaFunctionUrl": True,
            },
        },
    }


def _alarm(
    description: str, metric: dict[str, Any], *, threshold: Any, condition: str | None = None, **extra: Any
) -> dict[str, Any]:
    actions = if_("HasAlarmTopic", [ref("AlarmTopicArn")], [])
    alarm: dict[str, Any] = {
        "Type": "AWS::CloudWatch::Alarm",
        "Properties": {
            "AlarmDescription": description,
            **metric,
            "Threshold": threshold,
            "ComparisonOperator": extra.pop("ComparisonOperator", "GreaterThanOrEqualToThreshold"),
            "EvaluationPeriods": extra.pop("EvaluationPeriods", 1),
            "Period": extra.pop("Period", 300),
            "Statistic": extra.pop("Statistic", "Sum"),
            "TreatMissingData": extra.pop("TreatMissingData", "notBreaching"),
            "AlarmActions": actions,
            "OKActions": actions,
            **extra,
        },
    }
    if condition:
        alarm["Condition"] = condition
    return alarm


def _lambda_metric(name: str, function: str) -> dict[str, Any]:
    return {
        "Namespace": "AWS/Lambda",
        "MetricName": name,
        "Dimensions": [{"Name": "FunctionName", "Value": ref(function)}],
    }


def alarms() -> dict[str, Any]:
    found: dict[str, Any] = {}
    for function in FUNCTIONS:
        found[f"{function}ErrorsAlarm"] = _alarm(
            f"{function} raised errors (ingest: it could not write a batch; see its log)",
            _lambda_metric("Errors", function),
            threshold=1,
        )
        found[f"{function}ThrottlesAlarm"] = _alarm(
            f"{function} was throttled: its concurrency (reserved or the account's) ran out",
            _lambda_metric("Throttles", function),
            threshold=1,
        )
    found["IngestOffsetLagAlarm"] = _alarm(
        "Ingest is behind the events topic by more than OffsetLagAlarmThreshold records for 5 minutes",
        _lambda_metric("OffsetLag", "Ingest"),
        threshold=ref("OffsetLagAlarmThreshold"),
        Statistic="Maximum",
        Period=60,
        EvaluationPeriods=5,
        ComparisonOperator="GreaterThanThreshold",
    )
    for mapping, condition in (
        ("IngestSelfManagedKafkaMapping", "HasSelfManagedFailureDestination"),
        ("IngestMskMapping", "HasMskFailureDestination"),
    ):
        found[f"{mapping}FailureAlarm"] = _alarm(
            "The mapping handed records to OnFailureDestination: replay them with `trackflow replay`",
            {
                "Namespace": "AWS/Lambda",
                "MetricName": "OnFailureDestinationDeliveredEventCount",
                "Dimensions": [{"Name": "EventSourceMappingUUID", "Value": ref(mapping)}],
            },
            threshold=1,
            condition=condition,
        )
    found["CompactionAgeAlarm"] = _alarm(
        "A day has waited for rollup compaction longer than CompactionAgeAlarmSeconds (or compact stopped reporting)",
        {
            "Namespace": METRICS_NAMESPACE,
            "MetricName": COMPACTION_AGE_METRIC,
            "Dimensions": [{"Name": "function", "Value": ref("Compact")}],
        },
        threshold=ref("CompactionAgeAlarmSeconds"),
        Statistic="Maximum",
        Period=300,
        EvaluationPeriods=2,
        ComparisonOperator="GreaterThanThreshold",
        TreatMissingData="breaching",
    )
    return found
