"""The unzipped bundle run the way Lambda runs it: the Runtime Interface Emulator in front of ``awslambdaric``.

Lambda's Python images start ``awslambdaric`` with the function's ``Handler``
string (``app.compact``) behind the Runtime API; the Runtime Interface
Emulator (``aws-lambda-rie``, built by ``make lambda-runtime``) plays Lambda's
part on a loopback port and takes invocations over HTTP. Each
:class:`LambdaFunction` is one warm instance of one function: a clean CPython
3.12 whose ``sys.path`` holds only the bundle, the standard library and the
runtime's packages (``awslambdaric``; boto3 and what it imports, which Lambda's
runtime has), with the environment the packaged template gives that function.

What the function prints is its CloudWatch log: the emulator writes Lambda's
``START``/``END``/``REPORT`` lines into the same stream, so a test can read the
log bytes of one invocation (:meth:`LambdaFunction.log_of`). Local tooling for
the tests and benchmarks; it never ships.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import boto3

ROOT = Path(__file__).resolve().parents[1]
RIE = Path(sys.executable).parent / "aws-lambda-rie"
RUNTIME_PACKAGES = ROOT / "build" / "lambda-runtime"
# What Lambda's python runtime puts beside the bundle: the AWS SDK and what it imports.
SDK_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six.py")
INVOKE_PATH = "/2015-03-31/functions/function/invocations"


def lambda_python() -> str | None:
    """A CPython 3.12 to run the bundle in: TRACKFLOW_LAMBDA_PYTHON, python3.12 on PATH, or pyenv's."""
    candidates = [os.environ.get("TRACKFLOW_LAMBDA_PYTHON"), shutil.which("python3.12")]
    candidates += sorted(str(p) for p in Path.home().glob(".pyenv/versions/3.12.*/bin/python3.12"))
    for candidate in filter(None, candidates):
        probe = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 12))"], capture_output=True, text=True
        )  # a pyenv shim answers for a version it does not select with an error
        if probe.stdout.strip() == "True":
            return candidate
    return None


def missing_tools() -> str | None:
    """What is missing to run functions under the emulator, in words with the fix; None when nothing is."""
    if not RIE.exists() or not (RUNTIME_PACKAGES / "awslambdaric").is_dir():
        return "the Lambda Runtime Interface Emulator or awslambdaric is missing: run `make lambda-runtime`"
    if lambda_python() is None:
        return "no CPython 3.12 to run the python3.12 bundle in: set TRACKFLOW_LAMBDA_PYTHON, or `pyenv install 3.12`"
    return None


def runtime_folder(target: Path) -> Path:
    """Lambda's /var/runtime: awslambdaric for CPython 3.12, and the SDK the runtime ships."""
    target.mkdir(parents=True, exist_ok=True)
    for package in RUNTIME_PACKAGES.iterdir():
        if not package.name.startswith("."):
            (target / package.name).symlink_to(package)
    site = Path(boto3.__file__).resolve().parents[1]
    for name in SDK_PACKAGES:
        (target / name).symlink_to(site / name)
    return target


def _resolve(value: Any, values: Mapping[str, str]) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and set(value) == {"Ref"}:
        if value["Ref"] not in values:
            raise KeyError(f"the test gives no value for {{'Ref': {value['Ref']!r}}} in the template's environment")
        return values[value["Ref"]]
    raise ValueError(f"cannot resolve {value!r} in a function's environment")


def template_environment(template: Mapping[str, Any], function: str, values: Mapping[str, str]) -> dict[str, str]:
    """The environment the packaged template gives ``function``: Globals, then its own; Refs from ``values``."""
    defaults = {name: str(p.get("Default", "")) for name, p in template["Parameters"].items()}
    shared = template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    own = template["Resources"][function]["Properties"].get("Environment", {}).get("Variables", {})
    return {name: _resolve(value, {**defaults, **values}) for name, value in {**shared, **own}.items()}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LambdaFunction:
    """One instance of one function, started by the emulator with its ``handler``; ``invoke`` sends an event."""

    def __init__(
        self,
        handler: str,
        *,
        task: Path,
        runtime: Path,
        env: Mapping[str, str],
        log: Path,
        timeout_s: int = 60,
        memory_mb: int = 512,
    ) -> None:
        python = lambda_python()
        assert python is not None, missing_tools()
        self.handler = handler
        self.log = log
        self._port = _free_port()
        self._log_file = log.open("wb")
        lambda_env = {
            "PATH": "/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "TZ": "UTC",
            "PYTHONPATH": f"{task}:{runtime}",
            "LAMBDA_TASK_ROOT": str(task),
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(timeout_s),
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
            **env,
        }
        command = [
            str(RIE),
            "--runtime-interface-emulator-address",
            f"127.0.0.1:{self._port}",
            "--runtime-api-address",
            f"127.0.0.1:{_free_port()}",
            python,
            "-S",
            "-s",
            "-m",
            "awslambdaric",
            handler,
        ]
        self._process = subprocess.Popen(
            command,
            cwd=task,
            env=lambda_env,
            stdout=self._log_file,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # the emulator and the runtime it starts end together
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self._port), timeout=0.5).close()
                break
            except OSError as exc:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the emulator for {handler} did not start: {self.log.read_text()[-2000:]}"
                    ) from exc
                time.sleep(0.05)

    def invoke(self, event: Any, *, timeout_s: float = 60) -> Any:
        """Invoke once, as the trigger would; the function's answer (or Lambda's error document)."""
        request_id = str(uuid.uuid4())
        request = urllib.request.Request(
            f"http://127.0.0.1:{self._port}{INVOKE_PATH}",
            data=json.dumps(event).encode(),
            headers={"Content-Type": "application/json", "X-Amzn-RequestId": request_id},
        )
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            answer = json.loads(response.read() or b"null")
        self.last_request_id = request_id
        return answer

    def log_of(self, request_id: str, *, timeout_s: float = 10) -> list[str]:
        """The log lines of one invocation, START to REPORT, as CloudWatch Logs would store them."""
        deadline = time.monotonic() + timeout_s
        while True:
            lines = self.log.read_text(errors="replace").splitlines()
            starts = [n for n, line in enumerate(lines) if line.startswith(f"START RequestId: {request_id}")]
            ends = [n for n, line in enumerate(lines) if line.startswith(f"REPORT RequestId: {request_id}")]
            if starts and ends:
                return lines[starts[0] : ends[0] + 1]
            if time.monotonic() > deadline:
                raise AssertionError(f"no complete log for {request_id}: {lines[-20:]}")
            time.sleep(0.05)

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGTERM)
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()
        self._log_file.close()
