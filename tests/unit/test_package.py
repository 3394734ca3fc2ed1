"""The bundle check: what `trackflow package` refuses to ship."""

from __future__ import annotations

from pathlib import Path

import pytest

from trackflow.package import PackageError, check_bundle, pinned_requirements

X86_ELF = b"\x7fELF" + bytes(14) + (0x3E).to_bytes(2, "little")
ARM_ELF = b"\x7fELF" + bytes(14) + (0xB7).to_bytes(2, "little")
PINS = {"orjson": "3.13.0", "aws_msk_iam_sasl_signer_python": "1.0.2"}


def _bundle(**extra: bytes) -> dict[str, bytes]:
    files = {
        "app.py": b"",
        "orjson-3.13.0.dist-info/METADATA": b"",
        "aws_msk_iam_sasl_signer_python-1.0.2.dist-info/METADATA": b"",
        "orjson/orjson.cpython-312-x86_64-linux-gnu.so": X86_ELF,
    }
    files.update(extra)
    return files


def test_a_complete_bundle_for_the_runtime_passes() -> None:
    check_bundle(_bundle(), PINS, machine="x86_64")


def test_a_requirement_missing_from_the_zip_is_named() -> None:
    files = _bundle()
    del files["orjson-3.13.0.dist-info/METADATA"]
    with pytest.raises(PackageError, match=r"orjson==3\.13\.0"):
        check_bundle(files, PINS, machine="x86_64")


def test_a_requirement_at_another_version_counts_as_missing() -> None:
    with pytest.raises(PackageError, match="orjson"):
        check_bundle(_bundle(), {**PINS, "orjson": "3.12.0"}, machine="x86_64")


def test_an_extension_built_for_another_python_is_refused() -> None:
    files = _bundle(**{"crc32c/_crc32c.cpython-311-x86_64-linux-gnu.so": X86_ELF})
    with pytest.raises(PackageError, match="CPython 311"):
        check_bundle(files, PINS, machine="x86_64")


def test_a_library_for_the_other_cpu_is_refused() -> None:
    files = _bundle(**{"confluent_kafka.libs/librdkafka.so.1": ARM_ELF})
    with pytest.raises(PackageError, match="not x86_64"):
        check_bundle(files, PINS, machine="x86_64")


def test_requirements_must_be_pinned(tmp_path: Path) -> None:
    path = tmp_path / "requirements.txt"
    path.write_text("# deployed\norjson==3.13.0\nAWS-MSK-IAM-SASL-Signer-Python==1.0.2\n")
    assert pinned_requirements(path) == PINS
    path.write_text("orjson>=3\n")
    with pytest.raises(PackageError, match="not pinned"):
        pinned_requirements(path)
