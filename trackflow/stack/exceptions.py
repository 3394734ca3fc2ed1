"""Findings of AWS's rule sets that the template leaves on purpose, each with its reason.

``RULE_EXCEPTIONS`` maps a resource to the rules it skips (cfn-lint's ``W``/``E``
ids from the Serverless Rules, checkov's ``CKV_`` ids) and why. The reasons go
into the resource's Metadata beside the skip, so whoever reads the template
sees them.
"""

from __future__ import annotations

from typing import Any

# cfn-lint reports W1030 at the parameter's default, so it can only be skipped for the whole template.
TEMPLATE_EXCEPTIONS = {
    "W1030": "MskClusterArn's default is empty: it is needed only with KafkaSource=msk, and only what the IsMsk "
    "condition keeps refers to it (trackflow deploy refuses msk without it)."
}
_TRACING = (
    "X-Ray would trace about 5% of collect's requests at $5 per million traces (about $250 a month at 1B events); "
    "set Tracing: Active on a function while debugging it."
)
_LOG_GROUP = (
    "The function logs to its own log group through LoggingConfig.LogGroup, which keeps LogRetentionDays days; "
    "this rule only finds log groups named after the function."
)
_ENV_ENCRYPTION = (
    "No secret is in the environment: the salt, the ClickHouse password and the Kafka credentials are Secrets "
    "Manager ARNs read at cold start; Lambda encrypts the rest at rest with its own key."
)
_SYNCHRONOUS = (
    "Invoked synchronously (API Gateway, function URL): the caller gets the answer; a dead-letter queue only "
    "catches asynchronous invocations."
)
_SCHEDULED = (
    "A failed compaction changes nothing and the next run, a minute later, does the work again; the error raises "
    "CompactErrorsAlarm, and a stalled compaction CompactionAgeAlarm. There is no event worth keeping."
)
_LOG_KEY = (
    "Encrypted at rest by CloudWatch Logs' own key; the functions log metrics and errors, no event contents and "
    "no secrets."
)
_ACCESS_LOG = (
    "An access-log line per collect request would cost about as much in CloudWatch Logs as the function's "
    "compute; the function's one EMF line per request already carries route and status (docs/cost.md)."
)

RULE_EXCEPTIONS: dict[str, dict[str, str]] = {
    "APIHandler": {
        "WS1000": _TRACING,
        "WS1004": _LOG_GROUP,
        "CKV_AWS_116": _SYNCHRONOUS,
        "CKV_AWS_173": _ENV_ENCRYPTION,
    },
    "UrlHandler": {
        "WS1000": _TRACING,
        "WS1004": _LOG_GROUP,
        "CKV_AWS_116": _SYNCHRONOUS,
        "CKV_AWS_173": _ENV_ENCRYPTION,
    },
    "Ingest": {
        "WS1000": _TRACING,
        "WS1004": _LOG_GROUP,
        "CKV_AWS_116": "Invoked by the Kafka event source mapping, whose OnFailureDestination keeps failed batches; "
        "a function dead-letter queue only catches asynchronous invocations.",
        "CKV_AWS_173": _ENV_ENCRYPTION,
    },
    "Compact": {
        "WS1000": _TRACING,
        "WS1004": _LOG_GROUP,
        "ES1007": _SCHEDULED,
        "ES4000": _SCHEDULED,
        "CKV_AWS_116": _SCHEDULED,
        "CKV_AWS_173": _ENV_ENCRYPTION,
    },
    "RestAPI": {
        "ES2000": _ACCESS_LOG,
        "CKV_AWS_76": _ACCESS_LOG,
        "WS2002": _TRACING,
        "CKV_AWS_73": _TRACING,
        "CKV_AWS_120": "Collect is a POST that must reach the function every time; config answers with ETag and "
        "Cache-Control for browsers, and stats must be fresh.",
    },
    "ProjectsTable": {
        "CKV_AWS_119": "Encrypted at rest with the AWS managed key (SSESpecification). It holds project settings "
        "and keys; give SSESpecification a KMSMasterKeyId if your policy asks for a customer-managed key.",
    },
    "UrlHandlerFunctionUrl": {
        "CKV_AWS_258": "The public front door for browsers: tracker.js posts from any page, with no AWS credentials. "
        "Collect checks each project's API key and allowed origins; stats need the project's read token.",
    },
    "IngestSelfManagedKafkaMapping": {
        "ES1001": "DestinationConfig.OnFailure comes from OnFailureDestination inside Fn::If; with no destination "
        "the mapping retries for ever on purpose, so nothing is dropped.",
    },
    "IngestMskMapping": {
        "ES1001": "DestinationConfig.OnFailure comes from OnFailureDestination inside Fn::If; with no destination "
        "the mapping retries for ever on purpose, so nothing is dropped.",
    },
    **{f"{name}LogGroup": {"CKV_AWS_158": _LOG_KEY} for name in ("APIHandler", "UrlHandler", "Ingest", "Compact")},
}


def rule_metadata(rules: dict[str, str]) -> dict[str, Any]:
    """The Metadata that makes cfn-lint and checkov skip ``rules`` on a resource, with the reasons."""
    metadata: dict[str, Any] = {"RuleExceptions": dict(rules)}
    lint = sorted(rule for rule in rules if not rule.startswith("CKV"))
    checkov = sorted(rule for rule in rules if rule.startswith("CKV"))
    if lint:
        metadata["cfn-lint"] = {"config": {"ignore_checks": lint}}
    if checkov:
        metadata["checkov"] = {"skip": [{"id": rule, "comment": rules[rule]} for rule in checkov]}
    return metadata
