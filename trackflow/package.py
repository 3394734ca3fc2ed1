"""Build the Lambda bundle and its CloudFormation template (``trackflow package``).

Chalice packages the code and writes the template, but it installs
dependencies for the Python that runs it, and when a wheel does not fit it
prints a warning and exits 0 (or, from its cache, prints nothing). So Chalice
packages the code alone here; pip installs the dependencies for the Lambda
runtime and architecture (``--platform``/``--python-version``, wheels only,
so a missing wheel is an error); and the finished zip is checked: every
pinned requirement is in it at its version, and every native library is built
for the chosen CPU and Python. The template gets the runtime and architecture.

``aws-msk-iam-sasl-signer-python`` goes in without its dependencies: they are
boto3 and botocore, which the Lambda runtime has.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trackflow.stack import merge_template

# AL2023, under python3.12 and later, has glibc 2.34: wheels for it or older fit.
RUNTIME = "python3.12"
PYTHON_VERSION = "3.12"
GLIBC_MINORS = (34, 31, 28, 27, 26, 24, 17)
ARCHITECTURES = {"x86_64": "x86_64", "arm64": "aarch64"}  # Lambda's name: the wheel tag's
ELF_MACHINES = {"x86_64": 0x3E, "aarch64": 0xB7}
WITHOUT_DEPENDENCIES = {"aws-msk-iam-sasl-signer-python"}  # its dependencies are boto3/botocore: in Lambda
CODE = ("app.py", "chalicelib", ".chalice/config.json", ".chalice/policy.json")
MERGE_TEMPLATE = "trackflow-stack.json"
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024
_REQUIREMENT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")
_EXTENSION_TAG = re.compile(r"\.cpython-(\d+)-")


class PackageError(Exception):
    """The bundle cannot be built, or would not run in Lambda; the message says why."""


@dataclass(frozen=True)
class Bundle:
    """What ``build`` made: the zip and template, and the figures a user wants to see."""

    directory: Path
    architecture: str
    zipped_bytes: int
    unzipped_bytes: int
    requirements: dict[str, str]

    @property
    def zip_path(self) -> Path:
        return self.directory / "deployment.zip"


def pinned_requirements(path: Path) -> dict[str, str]:
    """``name==version`` lines of a requirements file, names normalised as in dist-info folders."""
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _REQUIREMENT.match(line)
        if match is None:
            raise PackageError(f"{path.name}: '{line}' is not pinned as name==version")
        pins[_normalise(match.group(1))] = match.group(2)
    return pins


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _pip_install(
    target: Path, requirements: list[str], *, machine: str, no_deps: bool, run: Callable[..., object]
) -> None:
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    command += ["--target", str(target), "--implementation", "cp", "--python-version", PYTHON_VERSION]
    command += ["--only-binary=:all:", "--no-compile", "--upgrade"]
    for minor in GLIBC_MINORS:
        command += ["--platform", f"manylinux_2_{minor}_{machine}"]
    command += ["--platform", f"manylinux2014_{machine}"]
    if no_deps:
        command.append("--no-deps")
    run([*command, *requirements])


def _run(command: list[str], cwd: Path | None = None) -> None:
    # Chalice wants a region to write a template, which resolves it with AWS::Region anyway.
    env = {"AWS_DEFAULT_REGION": "us-east-1"} | dict(os.environ)
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise PackageError(f"{' '.join(command[:4])} ... failed:\n{result.stdout}{result.stderr}")


def check_bundle(names_and_heads: dict[str, bytes], requirements: dict[str, str], *, machine: str) -> None:
    """Refuse a bundle that lacks a pinned requirement or holds a native library Lambda cannot load.

    ``names_and_heads`` maps each file in the zip to its first bytes (enough
    for an ELF header) for ``.so`` files, and to ``b""`` for the others.
    """
    present = set()
    for name in names_and_heads:
        top = name.split("/", 1)[0]
        if top.endswith(".dist-info"):
            dist, _, version = top[: -len(".dist-info")].partition("-")
            present.add((_normalise(dist), version))
    missing = [f"{name}=={version}" for name, version in requirements.items() if (name, version) not in present]
    if missing:
        raise PackageError(f"the bundle lacks {', '.join(sorted(missing))}: no {RUNTIME} {machine} wheel installed")
    wrong = []
    for name, head in names_and_heads.items():
        if not head:
            continue
        tag = _EXTENSION_TAG.search(name)
        if tag and tag.group(1) != PYTHON_VERSION.replace(".", ""):
            wrong.append(f"{name} (built for CPython {tag.group(1)})")
        elif head[:4] == b"\x7fELF" and int.from_bytes(head[18:20], "little") != ELF_MACHINES[machine]:
            wrong.append(f"{name} (not {machine})")
    if wrong:
        raise PackageError("native code Lambda cannot load: " + ", ".join(sorted(wrong)[:10]))


def _heads(bundle: zipfile.ZipFile) -> dict[str, bytes]:
    heads = {}
    for info in bundle.infolist():
        native = info.filename.endswith(".so") or ".so." in info.filename
        heads[info.filename] = bundle.open(info).read(20) if native and not info.is_dir() else b""
    return heads


def _template(chalice_template: Path, architecture: str) -> dict[str, Any]:
    template: dict[str, Any] = json.loads(chalice_template.read_text())
    for resource in template["Resources"].values():
        if resource.get("Type") == "AWS::Serverless::Function":
            resource["Properties"]["Runtime"] = RUNTIME
            resource["Properties"]["Architectures"] = [architecture]
    return template


def build(
    root: Path,
    out: Path,
    *,
    architecture: str = "x86_64",
    stage: str = "prod",
    progress: Callable[[str], None] = lambda _: None,
) -> Bundle:
    """Package ``root``'s app for ``architecture`` (x86_64 or arm64) into ``out``."""
    if architecture not in ARCHITECTURES:
        raise PackageError(f"architecture must be one of {', '.join(ARCHITECTURES)}, not {architecture!r}")
    machine = ARCHITECTURES[architecture]
    requirements = pinned_requirements(root / "requirements.txt")
    with tempfile.TemporaryDirectory(prefix="trackflow-package-") as scratch:
        staging = Path(scratch) / "app"
        for part in CODE:
            source, target = root / part, staging / part
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy2(source, target)
        (staging / "requirements.txt").write_text("")  # the dependencies are installed below
        progress(f"chalice package --stage {stage} (the code and the template)")
        chalice = Path(sys.executable).parent / "chalice"
        merge = Path(scratch) / MERGE_TEMPLATE
        merge.write_text(json.dumps(merge_template(), indent=2))
        _run([str(chalice), "package", "--stage", stage, "--merge-template", str(merge), "chalice-out"], staging)

        deps = Path(scratch) / "deps"
        progress(f"pip: {len(requirements)} requirements as {RUNTIME} {machine} wheels")
        separate = {_normalise(name) for name in WITHOUT_DEPENDENCIES}
        pins = {name: f"{name}=={version}" for name, version in requirements.items()}
        together = [pin for name, pin in pins.items() if name not in separate]
        alone = [pin for name, pin in pins.items() if name in separate]
        _pip_install(deps, together, machine=machine, no_deps=False, run=_run)
        if alone:
            _pip_install(deps, alone, machine=machine, no_deps=True, run=_run)
        shutil.rmtree(deps / "bin", ignore_errors=True)  # console scripts: nothing runs them in Lambda

        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        zip_path = out / "deployment.zip"
        shutil.copy2(staging / "chalice-out" / "deployment.zip", zip_path)
        with zipfile.ZipFile(zip_path, "a", compression=zipfile.ZIP_DEFLATED) as bundle:
            for path in sorted(deps.rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts:
                    bundle.write(path, path.relative_to(deps).as_posix())
        template = _template(staging / "chalice-out" / "sam.json", architecture)
        (out / "sam.json").write_text(json.dumps(template, indent=2) + "\n")

    progress("checking the zip: every requirement, native code for the runtime and CPU")
    with zipfile.ZipFile(zip_path) as bundle:
        check_bundle(_heads(bundle), requirements, machine=machine)
        unzipped = sum(info.file_size for info in bundle.infolist())
    if unzipped >= LAMBDA_UNZIPPED_LIMIT:
        raise PackageError(f"the bundle unzips to {unzipped} bytes, over Lambda's 250 MB limit")
    return Bundle(out, architecture, os.path.getsize(zip_path), unzipped, requirements)
