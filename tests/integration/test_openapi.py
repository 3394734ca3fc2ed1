"""docs/openapi.yaml matches the app's routes, and schemathesis finds no 5xx and no answer off the schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, settings

import app
from chalicelib.settings import load_settings
from tests.conftest import make_env
from tests.integration.tracker_harness import start_stack
from trackflow.broker import EmbeddedBroker
from trackflow.dev import DevStack
from trackflow.topics import ensure_topics

pytestmark = pytest.mark.integration

SPEC = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
schema = schemathesis.openapi.from_path(SPEC)


def test_every_route_is_described_and_every_described_route_exists() -> None:
    described = {
        (path, method.upper()) for path, ops in yaml.safe_load(SPEC.read_text())["paths"].items() for method in ops
    }
    routed = {(path, method) for path, methods in app.app.routes.items() for method in methods}
    assert described == routed


@pytest.fixture(scope="module")
def live(broker: EmbeddedBroker, data_dir: Path) -> Iterator[DevStack]:
    conf = load_settings(make_env(broker, data_dir, TRACKFLOW_STAGE="dev"))
    ensure_topics(conf.bootstrap_servers, {conf.events_topic: 1, conf.dlq_topic: 1})
    stack = start_stack(conf)
    yield stack
    stack.stop()


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_the_api_honours_its_schema(case: Any, live: DevStack) -> None:
    # Checked: no 5xx, and every status, header, content type and body as the spec
    # says. Not checked: how undeclared methods are refused (API Gateway does that
    # in AWS); that every schema-valid body is accepted (the validator has limits
    # JSON Schema can't say: nesting depth, total items, bytes of props); and that
    # invalid ones get exactly 400/422 (an over-long batch is a 413 on purpose).
    case.call_and_validate(
        base_url=live.api_url,
        excluded_checks=[
            schemathesis.checks.unsupported_method,
            schemathesis.checks.positive_data_acceptance,
            schemathesis.checks.negative_data_rejection,
        ],
    )
