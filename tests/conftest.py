"""Shared fixtures. Integration and e2e tests talk to real services: a dev stack under ``.pcigate-test/``
that the session starts when it is not already running (or the servers PCIGATE_DEV_POSTGRES_DSN and
PCIGATE_DEV_NATS_URL point to), and stops and deletes at the end only if it started it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pcigate.devstack import stack
from pcigate.devstack.layout import Layout
from tests.gateway_support import endpoint_from_status

ROOT = Path(__file__).resolve().parent.parent
TEST_HOME = Path(os.environ.get("PCIGATE_TEST_HOME", ROOT / ".pcigate-test"))


@pytest.fixture(scope="session")
def test_layout() -> Layout:
    return Layout(TEST_HOME.resolve())


@pytest.fixture(scope="session")
def dev_stack(test_layout: Layout) -> Iterator[dict[str, Any]]:
    """The live endpoints of the test stack (``pcigate dev status --json``)."""
    started = not stack.status(test_layout)["running"]
    status = stack.up(test_layout).status
    assert status["running"], status
    yield status
    if started and not os.environ.get("PCIGATE_TEST_KEEP_STACK"):
        # purge: as root the cluster's data may live outside the checkout, and must not outlive it
        stack.down(test_layout, purge=True)


@pytest.fixture(scope="session")
def gateway(dev_stack: dict[str, Any], test_layout: Layout) -> Any:
    """The dev stack's gateway (PostgreSQL protocol), with helpers for tokens and DSNs."""
    assert dev_stack["gateway"].get("postgres"), dev_stack
    return endpoint_from_status(dev_stack, test_layout)
