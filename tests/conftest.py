"""Shared test configuration. The broker fixtures come from jiexu's own pytest plugin (pytest11).

A test's tier is the folder it lives in: `pytest_collection_modifyitems` marks everything under
tests/unit, tests/integration and tests/e2e as ``unit``, ``integration`` or ``e2e`` (so ``-m unit``
runs the tier without I/O), and no module repeats it.
"""

import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from broker.logging import stderr_logger_factory
from broker.pytest_plugin import TestVhost
from broker.topology import TopologySpec, apply_topology, delete_agency_users
from tests.integration.postgres_support import PostgresSchema, fresh_schema
from tests.integration.transport_support import RETRY_DELAYS_MS, A, B, C

# The contract suites are shipped in the package: pytest explains their failed asserts only if it
# rewrites them, which it must be told before they are imported (an agency's conftest does the same).
pytest.register_assert_rewrite("agents.testing")

pytest_plugins = ["pytester"]

TIERS = ("unit", "integration", "e2e")
_TESTS = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its tier, from its folder, before ``-m`` selects."""
    for item in items:
        try:
            folder = item.path.resolve().relative_to(_TESTS).parts[0]
        except ValueError:  # a test outside tests/ (pytester's own files)
            continue
        if folder in TIERS:
            item.add_marker(folder)


@pytest.fixture(autouse=True)
def _fresh_structlog() -> Iterator[None]:
    """Each test starts from structlog's defaults: a CLI run in-process configures logging (level,
    renderer, stream) globally, and `capture_logs` would then miss events filtered by that level.

    One change to the defaults: events go to stderr (as it is at each write), as in every jiexu
    process, never to stdout. Agents running in the test's event loop log while a CLI command runs
    in a thread under `CliRunner`, which has swapped stdout for the command's JSON result.
    """
    structlog.reset_defaults()
    structlog.configure(logger_factory=stderr_logger_factory)
    structlog.contextvars.clear_contextvars()
    # A one-shot command run in-process (`dlq`) quiets the AMQP client's loggers for its person;
    # the next test starts with them as the library left them.
    quieted = {name: logging.getLogger(name).level for name in ("aiormq", "aio_pika")}
    yield
    for name, level in quieted.items():
        logging.getLogger(name).setLevel(level)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


@pytest.fixture
def agencies_sync(rabbitmq_vhost: TestVhost) -> Iterator[tuple[TestVhost, TopologySpec, Any]]:
    """A vhost provisioned for three agencies (A, B, C): (vhost, spec, credentials)."""
    spec = TopologySpec(
        agency_codes=(A, B, C),
        retry_delays_ms=RETRY_DELAYS_MS,
        user_prefix=f"t{uuid.uuid4().hex[:8]}-",
    )
    with rabbitmq_vhost.management() as api:
        credentials = apply_topology(api, rabbitmq_vhost.name, spec)
        try:
            yield rabbitmq_vhost, spec, credentials
        finally:
            delete_agency_users(api, spec)


@pytest.fixture
async def postgres_schema() -> AsyncIterator[PostgresSchema]:
    """A fresh schema on the test PostgreSQL for one test (skipped, or failed on CI, if none)."""
    async for schema in fresh_schema():
        yield schema
