"""Fixtures of the tracker tests: one dev stack, site and Chromium per module; a fresh browser context per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chalicelib.settings import Settings
from chalicelib.storage.clickhouse import connect
from tests.integration.tracker_harness import Site, Traffic, browser_fixture, stack_fixture, wire
from trackflow.broker import EmbeddedBroker
from trackflow.dev import DevStack


@pytest.fixture(scope="module")
def stack(broker: EmbeddedBroker, data_dir: Path) -> Iterator[DevStack]:
    yield from stack_fixture(broker, data_dir)


@pytest.fixture(scope="module")
def db(stack: DevStack) -> Any:
    conf: Settings = stack.settings
    return connect(conf.clickhouse, database=conf.clickhouse.database)


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    running = Site.start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from browser_fixture()


@pytest.fixture
def traffic() -> Traffic:
    return Traffic()


@pytest.fixture
def context(browser: Any, stack: DevStack, traffic: Traffic) -> Iterator[Any]:
    ctx = browser.new_context()
    wire(ctx, stack.api_url, traffic)
    yield ctx
    ctx.close()
